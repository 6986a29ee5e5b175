#!/usr/bin/env bash
# Rebuilds algohost/console/static/editor.js: CodeMirror 6 bundled and minified into one file.
# Run by hand when the editor's libraries change; nothing runs it at install or at run time,
# and nothing it fetches is kept in the repository but the bundle (licences: static/LICENSES.md).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="$PWD/algohost/console/static/editor.js"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/algohost-editor.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
cd "$SCRATCH"

cat > package.json <<'JSON'
{"name": "algohost-editor-bundle", "private": true, "dependencies": {
  "codemirror": "6.0.2", "@codemirror/view": "6.44.2", "@codemirror/state": "6.7.6",
  "@codemirror/commands": "6.11.2", "@codemirror/language": "6.13.1",
  "@codemirror/lang-python": "6.2.1", "@codemirror/lang-json": "6.0.2",
  "@codemirror/legacy-modes": "6.5.5", "esbuild": "0.28.2"}}
JSON
npm install --no-audit --no-fund --loglevel=error

cat > entry.js <<'JS'
import {basicSetup} from "codemirror";
import {EditorView, keymap} from "@codemirror/view";
import {EditorState} from "@codemirror/state";
import {indentWithTab} from "@codemirror/commands";
import {StreamLanguage} from "@codemirror/language";
import {python} from "@codemirror/lang-python";
import {json} from "@codemirror/lang-json";
import {toml} from "@codemirror/legacy-modes/mode/toml";
import {shell} from "@codemirror/legacy-modes/mode/shell";

function language(filename) {
  if (filename.endsWith(".py")) return [python()];
  if (filename.endsWith(".json") || filename.endsWith(".ipynb")) return [json()];
  if (filename.endsWith(".toml")) return [StreamLanguage.define(toml)];
  if (filename.endsWith(".sh")) return [StreamLanguage.define(shell)];
  return [];
}

// One editor per file: create(parent, text, filename, nonce) -> {text(), focus()}.
// The page's Content-Security-Policy allows style elements carrying its nonce only.
window.AlgohostEditor = {
  create(parent, text, filename, nonce) {
    const view = new EditorView({
      parent,
      state: EditorState.create({doc: text, extensions: [
        basicSetup, keymap.of([indentWithTab]), EditorView.lineWrapping,
        EditorView.cspNonce.of(nonce || ""), ...language(filename)]}),
    });
    return {text: () => view.state.doc.toString(), focus: () => view.focus(), view};
  },
};
JS
npx esbuild entry.js --bundle --minify --format=iife --target=es2020 --legal-comments=none \
    --outfile="$OUT"
echo "wrote $OUT ($(wc -c < "$OUT") bytes)"
