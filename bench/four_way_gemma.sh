#!/usr/bin/env bash
# RAG vs fine-tuning on a real model, end to end with the localrag commands a user runs:
# the Node.js 18 API docs (Markdown; bench/fetch_nodejs_api.sh) indexed with the default
# embedder → Gemma 3 270M (the pre-trained base, Q4_K_M) writes a RAFT dataset about sampled
# passages → LoRA on that GGUF, merged into it → `eval answers` four ways (base, base + RAG,
# fine-tuned, fine-tuned + RAG) on the dataset's held-out documents and on the hand-written
# questions of bench/questions/nodejs-api.jsonl. Every step is timed.
#
#     bash bench/four_way_gemma.sh [WORK_DIR]
#     SETS=hand-written bash bench/four_way_gemma.sh WORK_DIR   # only re-run that evaluation
#
# Needs the dev install (Gemma parts, the finetune extra). About 20 minutes on 2 cores.
# Results: WORK_DIR/results.md (also printed), the charts, and every answer in the JSON files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/localrag-four-way.XXXX)}
PASSAGES=${PASSAGES:-60}
EPOCHS=${EPOCHS:-2}
LIMIT=${LIMIT:-16}
mkdir -p "$WORK"
export LOCALRAG_HOME="$WORK/home"
LOCALRAG="$ROOT/.venv/bin/localrag"
PY="$ROOT/.venv/bin/python"
DB="$WORK/index.db"
CORPUS="$ROOT/bench/corpora/nodejs-18-api"
RESULTS="$WORK/results.md"

step() {  # step NAME COMMAND...: run it, note its wall time
    local name=$1 start end
    shift
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    # Not on stdout: a step's stdout may be redirected to its result file.
    echo "- $name: $((end - start)) s" | tee -a "$RESULTS" >&2
}

join_gemma() {
    (cd "$ROOT" && "$PY" -c "
import sys
from pathlib import Path
from tests.helpers.gemma import join_gemma
join_gemma(Path(sys.argv[1]) / 'gemma')" "$WORK")
}

table() {  # table JSON_FILE SET_NAME: the four modes' scores as Markdown
    "$PY" -c "
import json, sys
report = json.load(open(sys.argv[1]))
print(f'\n{sys.argv[2]} questions: {report[\"questions\"]}\n')
keys = [k for k, v in report['modes'][0].items() if k != 'mode' and not isinstance(v, list)]
print('| mode | ' + ' | '.join(keys) + ' |')
print('| --- |' + ' ---: |' * len(keys))
for row in report['modes']:
    cells = [f'{row[k]:.3f}' if isinstance(row[k], float) else str(row[k]) for k in keys]
    print(f'| {row[\"mode\"]} | ' + ' | '.join(cells) + ' |')" "$1" "$2"
}

if [ -z "${SETS:-}" ]; then
    [ -d "$CORPUS" ] || bash "$ROOT/bench/fetch_nodejs_api.sh"
    : >"$RESULTS"
    echo "# Four ways on Gemma 3 270M, Node.js 18 API docs ($(date -u +%F), $(nproc) cores)" \
        >>"$RESULTS"
    step "embedder import" "$LOCALRAG" models import-embedder
    step "index the corpus" "$LOCALRAG" index "$CORPUS" --db "$DB"
    join_gemma
    "$LOCALRAG" models import "$WORK/gemma/gemma-3-270m-q4_k_m.gguf" --name gemma-270m --symlink
    step "dataset ($PASSAGES passages, written by Gemma)" "$LOCALRAG" finetune dataset \
        "$WORK/dataset" --db "$DB" --model gemma-270m --passages "$PASSAGES" --per-passage 1 \
        --distractors 1 --seed 0
    step "fine-tune ($EPOCHS epochs, peft on CPU) and merge" "$LOCALRAG" finetune train \
        gemma-270m "$WORK/dataset" --name gemma-ft --epochs "$EPOCHS" --max-seq-len 1024 \
        --backend peft --out "$WORK/run"
fi
for set in ${SETS:-held-out hand-written}; do
    if [ "$set" = held-out ]; then
        questions="$WORK/dataset/test.jsonl"
    else
        questions="$ROOT/bench/questions/nodejs-api.jsonl"
    fi
    step "eval answers, $set questions (first $LIMIT)" "$LOCALRAG" eval answers "$questions" \
        --db "$DB" --base gemma-270m --finetuned gemma-ft --limit "$LIMIT" --max-tokens 96 \
        --chart "$WORK/four-way-$set.svg" --json >"$WORK/four-way-$set.json"
    table "$WORK/four-way-$set.json" "$set" >>"$RESULTS"
done
cat "$RESULTS"
