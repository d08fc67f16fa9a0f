"""llama.cpp's own numbers on a GGUF file, via its Python bindings (llama-cpp-python,
built from source by pip): the reference side of bench/local.sh. Same prompt words,
BOS, greedy decoding past end-of-generation, and thread count as the parallax side."""
import json
import sys
import time

from llama_cpp import Llama


def prompt_text(words):
    base = "The quick brown fox jumps over the lazy dog while the river runs past old stone bridges".split(" ")
    return " ".join(base[i % len(base)] for i in range(words))


def main():
    path, threads, prompt_tokens, gen_tokens, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=prompt_tokens + gen_tokens,
                n_batch=512, verbose=False)
    words = prompt_tokens
    while len(llm.tokenize(prompt_text(words).encode(), add_bos=True)) > prompt_tokens:
        words -= 1
    tokens = llm.tokenize(prompt_text(words).encode(), add_bos=True)
    for run in range(runs + 1):
        llm.reset()
        t0 = time.perf_counter()
        n = 0
        for _ in llm.generate(tokens, top_k=1, temp=0.0, reset=True):
            n += 1
            if n == 1:
                t_first = time.perf_counter()
            if n == gen_tokens:
                break
        t_end = time.perf_counter()
        if run == 0:
            continue
        print(json.dumps({
            "impl": "llama-cpp-python", "model": path.rsplit("/", 1)[-1], "threads": threads, "run": run,
            "prompt_tokens": len(tokens), "gen_tokens": n,
            "prompt_tps": round(len(tokens) / (t_first - t0), 2),
            "gen_tps": round((n - 1) / (t_end - t_first), 2),
        }), flush=True)


if __name__ == "__main__":
    main()
