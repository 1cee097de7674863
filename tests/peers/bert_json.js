// bert_json.js VOCAB_TXT > tokenizer.json
// The tokenizer.json of BERT-base-uncased made from its vocab.txt with the
// settings Hugging Face's `tokenizers` writes for that model (BertTokenizerFast
// converted from the slow tokenizer with do_lower_case true): BertNormalizer
// (clean_text, handle_chinese_chars, lowercase, strip_accents null = follow
// lowercase), BertPreTokenizer, WordPiece ([UNK], "##", 100 characters),
// the [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1 template and the WordPiece
// decoder.  The five special tokens are added tokens, as in the hub's file.
"use strict";
const fs = require("fs");

if (process.argv.length !== 3) {
  process.stderr.write("usage: node bert_json.js VOCAB_TXT > tokenizer.json\n");
  process.exit(2);
}
const path = process.argv[2];
// One token per line; the last line may or may not end in "\n".
const lines = fs.readFileSync(path, "utf8").split("\n");
if (lines[lines.length - 1] === "") lines.pop();
const vocab = {};
lines.forEach((tok, i) => {
  tok = tok.replace(/\r$/, "");
  if (!(tok in vocab)) vocab[tok] = i;
});

function id(tok) {
  if (!(tok in vocab)) {
    process.stderr.write(`bert_json.js: ${path}: no ${tok} in the vocabulary\n`);
    process.exit(1);
  }
  return vocab[tok];
}
const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const added = special.map((tok) => ({
  id: id(tok), content: tok, single_word: false, lstrip: false, rstrip: false,
  normalized: false, special: true,
}));
const cls = id("[CLS]"), sep = id("[SEP]");
const json = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: added,
  normalizer: {
    type: "BertNormalizer", clean_text: true, handle_chinese_chars: true,
    strip_accents: null, lowercase: true,
  },
  pre_tokenizer: { type: "BertPreTokenizer" },
  post_processor: {
    type: "TemplateProcessing",
    single: [
      { SpecialToken: { id: "[CLS]", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "[SEP]", type_id: 0 } },
    ],
    pair: [
      { SpecialToken: { id: "[CLS]", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "[SEP]", type_id: 0 } },
      { Sequence: { id: "B", type_id: 1 } },
      { SpecialToken: { id: "[SEP]", type_id: 1 } },
    ],
    special_tokens: {
      "[CLS]": { id: "[CLS]", ids: [cls], tokens: ["[CLS]"] },
      "[SEP]": { id: "[SEP]", ids: [sep], tokens: ["[SEP]"] },
    },
  },
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: {
    type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##",
    max_input_chars_per_word: 100, vocab,
  },
};
process.stdout.write(JSON.stringify(json, null, 2) + "\n");
