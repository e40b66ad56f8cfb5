// The timer functions every JavaScript runtime the client targets has
// (browsers, React Native, Node). Declared here so that the library compiles
// with no DOM or Node types: it must use nothing else from either.
declare function setTimeout(fn: () => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
declare function setInterval(fn: () => void, ms?: number): unknown;
declare function clearInterval(handle: unknown): void;
