// hf_encode.js - the independent peer of the tokenizer tests and bench:
// encodes text files with @huggingface/tokenizers (or gpt-3-encoder) and
// prints the ids, one per line.
//
//   node hf_encode.js [--add-special] [--time] [--quiet] [--peer hf|gpt-3-encoder]
//                     [--out-dir DIR] [--pieces BYTES] [--bert-astral-cjk] TOKENIZER TEXT...
//   node hf_encode.js --jsonl [--bert-astral-cjk] TOKENIZER FILE.jsonl
//
// One TEXT: the ids go to stdout.  With --out-dir, the ids of each TEXT go to
// DIR/<its file name>.ids (the tokenizer is loaded once for all of them).
// TOKENIZER is a tokenizer.json or a directory holding one (its
// tokenizer_config.json is read too when present).  The text file is one
// document, read as UTF-8, encoded as encode(text, add_special_tokens=false)
// (true with --add-special).  --time prints "hf_encode: X MB in Y s (Z MB/s),
// N tokens" on stderr, timing the encoding only (not the loading); --quiet
// leaves out the ids.  --pieces BYTES encodes each text in pieces of about
// BYTES, cut as pslora cuts chunks (just after a "\n" between two printable
// ASCII characters; see cli/textenc.c), for texts too long to encode at once
// in JS: only right for tokenizers that pslora itself would cut (GPT-2, BERT),
// without --add-special.  --bert-astral-cjk works around a bug of the peer
// (0.2.0): its BertNormalizer tests handle_chinese_chars on UTF-16 code
// units (text[i].charCodeAt(0)), so it never sees the CJK ideographs beyond
// U+FFFF (extensions B-E, compatibility supplement) that Hugging Face's Rust
// and Python tokenizers put spaces around; with the flag, this script puts the
// spaces around them first, as those do.  --jsonl reads JSON Lines of
// classification data ({"text", "text_pair"?}, blank lines skipped) and prints
// one line per sample, "IDS;TYPES": the ids of encode(text, {text_pair,
// add_special_tokens: true}) (BERT: [CLS] text [SEP] (text_pair [SEP])) and
// their token_type_ids, each space-separated.  The packages come from PSLORA_PEERS (the directory
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
  const a = { addSpecial: false, time: false, quiet: false, peer: "hf", outDir: null,
              pieces: 0, astralCjk: false, jsonl: false, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s === "--add-special") a.addSpecial = true;
    else if (s === "--time") a.time = true;
    else if (s === "--quiet") a.quiet = true;
    else if (s === "--peer") a.peer = argv[++i];
    else if (s === "--out-dir") a.outDir = argv[++i];
    else if (s === "--pieces") a.pieces = Number(argv[++i]);
    else if (s === "--bert-astral-cjk") a.astralCjk = true;
    else if (s === "--jsonl") a.jsonl = true;
    else if (s.startsWith("--")) usage(`unknown flag ${s}`);
    else a.files.push(s);
  }
  if (a.files.length < 2) usage("expected TOKENIZER and TEXT...");
  if (a.files.length > 2 && !a.outDir) usage("several TEXTs need --out-dir");
  if (a.peer !== "hf" && a.peer !== "gpt-3-encoder") usage(`--peer: unknown peer ${a.peer}`);
  if (!(a.pieces >= 0)) usage("--pieces: expected a byte count");
  if (a.pieces && a.addSpecial) usage("--pieces: not with --add-special");
  if (a.jsonl && (a.files.length !== 2 || a.peer !== "hf" || a.pieces || a.outDir || a.time))
    usage("--jsonl: one TOKENIZER and one FILE.jsonl, with the hf peer only");
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

// The CJK ideographs beyond U+FFFF of BERT's _is_chinese_char.
const ASTRAL_CJK = /[\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{2F800}-\u{2FA1F}]/gu;

// The text cut into pieces of about size bytes (UTF-16 units here, which is
// the same for the ASCII around a cut), each ending in "X\n" before "Y".
function cutPieces(text, size) {
  const printable = (c) => c > 0x20 && c < 0x7f;
  const out = [];
  let start = 0;
  while (start < text.length) {
    let cut = text.length;
    for (let i = Math.max(start + size, 1); i + 1 < text.length; i++) {
      i = text.indexOf("\n", i);
      if (i < 0 || i + 1 >= text.length) break;
      if (printable(text.charCodeAt(i - 1)) && printable(text.charCodeAt(i + 1))) {
        cut = i + 1;
        break;
      }
    }
    out.push(text.slice(start, cut));
    start = cut;
  }
  return out;
}

// --jsonl: "IDS;TYPES" per sample of a classification JSON Lines file.
async function encodeJsonl(a, peers) {
  const mod = await import(pathToFileURL(path.join(peers, "hf-tokenizers", "dist", "tokenizers.mjs")).href);
  const { json, cfg } = readTokenizer(a.files[0]);
  const tok = new mod.Tokenizer(json, cfg);
  const fix = (t) => (a.astralCjk && typeof t === "string" ? t.replace(ASTRAL_CJK, " $& ") : t);
  const lines = fs.readFileSync(a.files[1], "utf8").split("\n");
  let out = "";
  for (const line of lines) {
    if (line.trim() === "") continue;
    const o = JSON.parse(line);
    const pair = o.text_pair === undefined || o.text_pair === null ? null : fix(o.text_pair);
    const r = tok.encode(fix(o.text), { text_pair: pair, add_special_tokens: true,
                                        return_token_type_ids: true });
    out += r.ids.join(" ") + ";" + r.token_type_ids.join(" ") + "\n";
  }
  process.stdout.write(out);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const peers = process.env.PSLORA_PEERS;
  if (!peers || !fs.existsSync(path.join(peers, "hf-tokenizers", "package.json")))
    usage(`PSLORA_PEERS='${peers || ""}' holds no peers: run 'bash tests/peers/fetch.sh build/peers'`);
  if (a.jsonl) return encodeJsonl(a, peers);
  const encode = await makeEncoder(a, peers);
  for (const file of a.files.slice(1)) {
    const buf = fs.readFileSync(file);
    let text = buf.toString("utf8");
    if (a.astralCjk) text = text.replace(ASTRAL_CJK, " $& ");
    const t0 = process.hrtime.bigint();
    let ids;
    if (a.pieces) {
      ids = [];
      for (const piece of cutPieces(text, a.pieces)) {
        const part = encode(piece);
        for (let k = 0; k < part.length; k++) ids.push(part[k]);
      }
    } else ids = encode(text);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (a.time) {
      const mb = buf.length / 1e6;
      process.stderr.write(`hf_encode: ${mb.toFixed(2)} MB in ${secs.toFixed(3)} s ` +
        `(${(mb / secs).toFixed(2)} MB/s), ${ids.length} tokens\n`);
    }
    const out = ids.length ? ids.join("\n") + "\n" : "";
    if (a.outDir) fs.writeFileSync(path.join(a.outDir, path.basename(file) + ".ids"), out);
    else if (!a.quiet) process.stdout.write(out);
  }
}

main().catch((err) => {
  process.stderr.write(`hf_encode.js: ${err.message}\n`);
  process.exit(1);
});
