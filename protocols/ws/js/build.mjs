// Builds dist/: ESM (index.mjs) and CommonJS (index.cjs) with esbuild, type
// declarations with tsc, and prints the minified+gzipped size.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { consoleBundleFile, consoleBundleOptions } from "./console-bundle.mjs";

const require = createRequire(import.meta.url);
rmSync("dist", { recursive: true, force: true });
const common = { entryPoints: ["src/index.ts"], bundle: true, target: "es2019", platform: "neutral", logLevel: "warning" };
await build({ ...common, format: "esm", outfile: "dist/index.mjs" });
await build({ ...common, format: "cjs", outfile: "dist/index.cjs" });
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.json"], { stdio: "inherit" });
copyFileSync("dist/index.d.ts", "dist/index.d.mts");
// The web console's copy (committed, so a plain `go build` works).
await build({ ...consoleBundleOptions, outfile: fileURLToPath(consoleBundleFile) });
const min = await build({ ...common, format: "esm", minify: true, write: false });
const bytes = min.outputFiles[0].contents;
console.log(`@kedge/client: ${bytes.length} bytes minified, ${gzipSync(bytes, { level: 9 }).length} bytes minified+gzipped`);
