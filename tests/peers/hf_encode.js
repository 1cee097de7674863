// hf_encode.js - the independent peer of the tokenizer tests and bench:
// encodes a text file with @huggingface/tokenizers (or gpt-3-encoder) and
// prints the ids, one per line.
//
//   node hf_encode.js [--add-special] [--time] [--quiet] [--peer hf|gpt-3-encoder]
//                     TOKENIZER TEXT
//
// TOKENIZER is a tokenizer.json or a directory holding one (its
// tokenizer_config.json is read too when present).  The text file is one
// document, read as UTF-8, encoded as encode(text, add_special_tokens=false)
// (true with --add-special).  --time prints "hf_encode: X MB in Y s (Z MB/s),
// N tokens" on stderr, timing the encoding only (not the loading); --quiet
// leaves out the ids.  The packages come from PSLORA_PEERS (the directory
// made by tests/peers/fetch.sh).
"use strict";
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

function usage(msg) {
  process.stderr.write(`hf_encode.js: ${msg}\n` +
    "usage: node hf_encode.js [--add-special] [--time] [--quiet] [--peer hf|gpt-3-encoder] TOKENIZER TEXT\n");
  process.exit(2);
}

function parseArgs(argv) {
  const a = { addSpecial: false, time: false, quiet: false, peer: "hf", files: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === "--add-special") a.addSpecial = true;
    else if (s === "--time") a.time = true;
    else if (s === "--quiet") a.quiet = true;
    else if (s === "--peer") a.peer = argv[++i];
    else if (s.startsWith("--")) usage(`unknown flag ${s}`);
    else a.files.push(s);
  }
  if (a.files.length !== 2) usage("expected TOKENIZER and TEXT");
  if (a.peer !== "hf" && a.peer !== "gpt-3-encoder") usage(`--peer: unknown peer ${a.peer}`);
  return a;
}

// The tokenizer.json and tokenizer_config.json ({} when absent) of TOKENIZER.
function readTokenizer(p) {
  const dir = fs.statSync(p).isDirectory();
  const json = dir ? path.join(p, "tokenizer.json") : p;
  const cfgPath = path.join(dir ? p : path.dirname(p), "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  return { json: JSON.parse(fs.readFileSync(json, "utf8")), cfg };
}

// An encode(text) -> ids function of the chosen peer.
async function makeEncoder(a, peers) {
  if (a.peer === "gpt-3-encoder") {
    if (a.addSpecial) usage("--add-special: gpt-3-encoder adds no special tokens");
    const enc = require(path.join(peers, "gpt-3-encoder", "index.js"));
    return (text) => enc.encode(text);
  }
  const mod = await import(pathToFileURL(path.join(peers, "hf-tokenizers", "dist", "tokenizers.mjs")).href);
  const { json, cfg } = readTokenizer(a.files[0]);
  const tok = new mod.Tokenizer(json, cfg);
  return (text) => tok.encode(text, { add_special_tokens: a.addSpecial }).ids;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const peers = process.env.PSLORA_PEERS;
  if (!peers || !fs.existsSync(path.join(peers, "hf-tokenizers", "package.json")))
    usage(`PSLORA_PEERS='${peers || ""}' holds no peers: run 'bash tests/peers/fetch.sh build/peers'`);
  const encode = await makeEncoder(a, peers);
  const buf = fs.readFileSync(a.files[1]);
  const text = buf.toString("utf8");
  const t0 = process.hrtime.bigint();
  const ids = encode(text);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (a.time) {
    const mb = buf.length / 1e6;
    process.stderr.write(`hf_encode: ${mb.toFixed(2)} MB in ${secs.toFixed(3)} s ` +
      `(${(mb / secs).toFixed(2)} MB/s), ${ids.length} tokens\n`);
  }
  if (!a.quiet && ids.length) process.stdout.write(ids.join("\n") + "\n");
}

main().catch((err) => {
  process.stderr.write(`hf_encode.js: ${err.message}\n`);
  process.exit(1);
});
