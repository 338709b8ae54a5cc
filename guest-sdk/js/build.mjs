#!/usr/bin/env node
// Builds a JavaScript weir operator into a component of the weir:operator
// world `buffering-operator` with componentize-js (its componentize() API).
//
//   node guest-sdk/js/build.mjs path/to/operator.js -o out.wasm [--wit wit]
//
// The operator's directory (its .js/.mjs files) is copied next to the SDK
// into a scratch directory, `from "weir"` becomes `from "./weir.js"` (and
// `from "weir/window"` `from "./window.js"`), and an
// entry module wires the WIT imports (host.js) before the operator and
// exports the SDK's `snapshots` beside the operator's `hooks`.
import { mkdtemp, readdir, readFile, writeFile, copyFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = dirname(fileURLToPath(import.meta.url));
const SDK_FILES = ["weir.js", "codec.js", "wire.js", "host.js", "window.js", "cache.js"];

function usage(message) {
  if (message) console.error(`error: ${message}`);
  console.error("usage: node build.mjs OPERATOR.js -o OUT.wasm [--wit WIT_DIR]");
  process.exit(2);
}

const args = process.argv.slice(2);
let source, output, wit = resolve(sdk, "../../wit");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "-o") output = args[++i];
  else if (args[i] === "--wit") wit = args[++i];
  else if (!source) source = args[i];
  else usage(`unexpected argument ${args[i]}`);
}
if (!source || !output) usage();

let componentize;
try {
  ({ componentize } = await import("@bytecodealliance/componentize-js"));
} catch (e) {
  console.error(`error: @bytecodealliance/componentize-js is not installed (${e.code ?? e.message}).
Install it with:  bash scripts/setup.sh   (or: cd guest-sdk/js && npm install --no-save)`);
  process.exit(3);
}

const srcDir = dirname(resolve(source));
const work = await mkdtemp(join(tmpdir(), "weir-js-"));
try {
  for (const name of await readdir(srcDir)) {
    if (!/\.m?js$/.test(name)) continue;
    if (SDK_FILES.includes(name) || name === "weir-entry.js") {
      throw new Error(`${join(srcDir, name)}: this name is reserved for the weir SDK; rename the file`);
    }
    const text = await readFile(join(srcDir, name), "utf8");
    const rewritten = text
      .replace(/(from\s*|import\s*\(?\s*)(["'])weir\2/g, "$1$2./weir.js$2")
      .replace(/(from\s*|import\s*\(?\s*)(["'])weir\/window\2/g, "$1$2./window.js$2");
    await writeFile(join(work, name), rewritten);
  }
  for (const name of SDK_FILES) await copyFile(join(sdk, name), join(work, name));
  const entry = join(work, "weir-entry.js");
  // `snapshots` hands the host what the operator's write-back caches hold;
  // it takes the place of any `snapshots` the operator's module exports.
  await writeFile(entry, `import "./host.js";\nexport * from "./${basename(source)}";\nexport { snapshots } from "./weir.js";\n`);
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: entry,
    witPath: resolve(wit),
    worldName: "buffering-operator",
    // weir grants no network; leave out fetch() so the component does not
    // import wasi:http at all.
    disableFeatures: ["http", "fetch-event"],
  });
  await mkdir(dirname(resolve(output)), { recursive: true });
  await writeFile(output, component);
  console.error(`built ${output} (${(component.length / 1e6).toFixed(1)} MB) from ${source} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(`error: building ${source} failed: ${e.message ?? e}`);
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
