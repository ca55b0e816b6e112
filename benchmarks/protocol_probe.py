"""Prompt presets on the embedded target: plain, prompted and natively steered runs through lm-eval, per preset.

For each preset (the paper's `cot`, the upstream-style `cot_qa`, and the pre-protocol pair whose templates end on
different tokens, ':' vs '.'), runs GSM8K test questions through lm-eval's evaluator on Gemma-3-270M:
plain (locked prompt), prompted (unlocked prompt) and native steering (the target's own key, locked prompt).
Prints accuracy and answer-found rate from lm-eval's results, and the share of step-structured outputs (a numbered
item or a step word in the first 40 characters) from its logged samples.

    UNLOCK_EVAL_DATA_DIR=../shared/data python benchmarks/protocol_probe.py --limit 20 --max-gen-toks 256
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

STEP_RE = re.compile(r"(^|\n)\s*(\d+[.)]|[-*]\s)|\b(step|first|firstly|let's|let us|we need|we have|we know)\b", re.I)

# The pre-protocol pair: lm-eval-style prompts ending in ':' (locked) and '.' (unlocked), as tasks of our own.
OLD_LOCKED, OLD_UNLOCKED = "Question: {question}\nAnswer:", "Question: {question}\nAnswer: Let's think step by step."
OLD_TASK = """task: {name}
dataset_path: openai/gsm8k
custom_dataset: !function unlock_eval.tasks.utils.load_gsm8k
process_docs: !function unlock_eval.tasks.utils.process_gsm8k
test_split: test
output_type: generate_until
doc_to_text: {prompt}
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: ["Question:", "</s>", "<end_of_turn>"], do_sample: false, max_gen_toks: 512}}
filter_list:
  - name: checker
    filter:
      - {{function: custom, filter_fn: !function unlock_eval.tasks.utils.checker_filter}}
      - {{function: take_first}}
process_results: !function unlock_eval.tasks.utils.process_results
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
  - {{metric: answer_found, aggregation: mean, higher_is_better: true}}
  - {{metric: gen_len_pieces, aggregation: mean, higher_is_better: false}}
"""


def step_share(samples: list[dict]) -> float:
    texts = [s["resps"][0][0] for s in samples]
    return sum(bool(STEP_RE.search(t[:40])) for t in texts) / len(texts)


def main() -> None:
    import json

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from tabulate import tabulate

    from unlock_eval.model_adapters.unlock import UnlockLM
    from unlock_eval.models import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=20)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="protocol_probe_"))
    for name, template in (("gsm8k_old_unlock", OLD_LOCKED), ("gsm8k_old_cot_unlock", OLD_UNLOCKED)):
        prompt = json.dumps(template.replace("{question}", "{{question}}"))
        (folder / f"{name}.yaml").write_text(OLD_TASK.format(name=name, prompt=prompt))
    manager = TaskManager(include_path=str(folder))
    target = resolve_model("gemma3-270m").pretrained
    plain = HFLM(pretrained=target, device="cpu", dtype="float32", batch_size=args.batch_size)
    presets = {
        "cot (paper)": ("gsm8k_unlock", "gsm8k_cot_unlock", {"capability": "cot"}),
        "cot_qa": ("gsm8k_qa_unlock", "gsm8k_qa_cot_unlock", {"capability": "cot_qa"}),
        "old ':' vs '.'": (
            "gsm8k_old_unlock",
            "gsm8k_old_cot_unlock",
            {"locked_template": OLD_LOCKED, "unlocked_template": OLD_UNLOCKED},
        ),
    }
    rows = []
    for preset, (locked_task, unlocked_task, templates) in presets.items():
        native = UnlockLM(
            target="gemma3-270m", alpha=args.alpha, n=args.n, device="cpu", batch_size=args.batch_size, **templates
        )
        for run, model, task in (
            ("plain", plain, locked_task),
            ("prompted", plain, unlocked_task),
            ("native steering", native, locked_task),
        ):
            out = lm_eval.simple_evaluate(
                model=model,
                tasks=[task],
                task_manager=manager,
                limit=args.limit,
                log_samples=True,
                bootstrap_iters=0,
                gen_kwargs=f"max_gen_toks={args.max_gen_toks}",
            )
            res, samples = out["results"][task], out["samples"][task]
            rows.append([preset, run, task, res["acc,checker"], res["answer_found,checker"], step_share(samples)])
            print(rows[-1], flush=True)
    print(
        f"\nGemma-3-270M, GSM8K test (first {args.limit}), greedy, {args.max_gen_toks} new tokens; native steering "
        f"alpha={args.alpha}, n={args.n} (the target's own key, mean aggregator)"
    )
    print(tabulate(rows, headers=["preset", "run", "task", "acc", "answer found", "step-structured"], floatfmt=".2f"))


if __name__ == "__main__":
    main()
