// How the web console's copy of the client is built: a minified browser
// script exposing the global `kedge`, written into protocols/console/static
// (embedded in the kedge binary). build.mjs writes it; a test rebuilds it in
// memory and fails when the committed file no longer matches the source.
export const consoleBundleFile = new URL("../../console/static/kedge-client.js", import.meta.url);
export const consoleBundleOptions = {
  entryPoints: [new URL("src/index.ts", import.meta.url).pathname],
  bundle: true, target: "es2019", format: "iife", globalName: "kedge",
  minify: true, legalComments: "none", logLevel: "warning",
  banner: { js: "/* @kedge/client for the kedge console: built from protocols/ws/js by `make js`. */" },
};
