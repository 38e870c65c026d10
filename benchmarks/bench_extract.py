"""Feature-extraction throughput in frames per second, split into decoding
and encoding.

By default it uses a generated video and the tiny random BLIP-2 (plumbing
speed only). With --real it builds BLIP-2 ViT-g with the real checkpoint's
architecture (random weights, nothing downloaded) to measure what a GPU
does with the actual model:

    python benchmarks/bench_extract.py --real --device cuda --batch-size 128 --frames 2048

--compare-int8 (CPU) encodes the same frames with float32 and with
``quantize="int8"`` and prints both speeds and how close the int8 similarity
curves are to float32's (Pearson correlation per sentence, and how often the
best frame is the same):

    python benchmarks/bench_extract.py --real --compare-int8 --frames 6
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def real_vitg_dir(directory: Path) -> str:
    """Blip2ForImageTextRetrieval with blip2-itm-vit-g-coco's architecture, random weights."""
    from transformers import BertTokenizerFast, Blip2Config, Blip2ForImageTextRetrieval, BlipImageProcessor

    from tfvtg.testing import build_tiny_blip2

    build_tiny_blip2(directory)  # for its tokenizer files
    config = Blip2Config(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=364, patch_size=14, layer_norm_eps=1e-6, qkv_bias=True,
                           initializer_range=0.02),  # transformers' vision default 1e-10 makes every frame alike
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, vocab_size=30523, cross_attention_frequency=2, initializer_range=0.02,
                            max_position_embeddings=512, use_qformer_text_input=True),
        num_query_tokens=32, image_text_hidden_size=256, initializer_range=0.02)
    model = Blip2ForImageTextRetrieval(config)
    model.save_pretrained(directory)
    BertTokenizerFast.from_pretrained(directory).save_pretrained(directory)
    BlipImageProcessor(size={"height": 364, "width": 364}).save_pretrained(directory)
    return str(directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="ViT-g architecture with random weights")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--frames", type=int, default=300, help="sampled frames in the test video")
    ap.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    ap.add_argument("--quantize", default=None, choices=["int8"], help="dynamic int8 quantization (CPU)")
    ap.add_argument("--compare-int8", action="store_true", help="float32 vs int8 on the same frames (CPU)")
    args = ap.parse_args()
    if args.compare_int8:
        compare_int8(args)
        return

    from tfvtg import Blip2Encoder
    from tfvtg.testing import build_tiny_blip2, make_video
    from tfvtg.video.decode import iter_frame_batches

    work = Path(tempfile.mkdtemp(prefix="tfvtg-bench-"))
    # 10 fps source sampled at 3 fps: frames/3*10 source frames
    video = make_video(work / "v.mp4", n_frames=int(args.frames / 3 * 10), fps=10, size=(640, 360))
    model_dir = real_vitg_dir(work / "vitg") if args.real else build_tiny_blip2(work / "tiny")
    enc = Blip2Encoder(model_dir, device=args.device, batch_size=args.batch_size, quantize=args.quantize)

    t0 = time.perf_counter()
    info, idx, batches = iter_frame_batches(video, fps=3.0, batch_size=enc.batch_size, backend=args.backend)
    decoded = [b for b in batches]
    t_decode = time.perf_counter() - t0
    n = sum(len(b) for b in decoded)

    enc.encode_frames(decoded[0][:2])  # load + warm-up
    t0 = time.perf_counter()
    for b in decoded:
        enc.encode_frames(b)
    if enc.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    t_encode = time.perf_counter() - t0

    t0 = time.perf_counter()
    enc.encode_video(video)
    t_total = time.perf_counter() - t0
    print(f"model: {'ViT-g (random weights)' if args.real else 'tiny BLIP-2'}, device {enc.device}, "
          f"batch {enc.batch_size}, decoder {info.backend}, {n} frames of 640x360")
    print(f"decode: {n / t_decode:10.4g} frames/s")
    print(f"encode: {n / t_encode:10.4g} frames/s = {t_encode / n:.4g} s/frame (preprocessing included)")
    print(f"encode_video end to end: {n / t_total:10.4g} frames/s")


def compare_int8(args: argparse.Namespace) -> None:
    import numpy as np

    from tfvtg import Blip2Encoder
    from tfvtg.testing import build_tiny_blip2

    work = Path(tempfile.mkdtemp(prefix="tfvtg-bench-"))
    model_dir = real_vitg_dir(work / "vitg") if args.real else build_tiny_blip2(work / "tiny")
    rng = np.random.default_rng(0)
    # smooth random images (random weights see noise and structure alike)
    frames = rng.integers(0, 256, size=(args.frames, 36, 64, 3)).astype(np.uint8).repeat(10, 1).repeat(10, 2)
    texts = ["a person opens the door", "a dog jumps", "man drinks water", "woman eats food",
             "a person turns the light on", "someone sits on a chair"]
    results = {}
    for mode in (None, "int8"):
        enc = Blip2Encoder(model_dir, device="cpu", batch_size=args.batch_size or len(frames), quantize=mode)
        enc.encode_frames(frames[:1])  # load + warm-up
        t0 = time.perf_counter()
        tokens = enc.encode_frames(frames)
        elapsed = time.perf_counter() - t0
        text = enc.encode_text(texts)
        tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)
        text /= np.linalg.norm(text, axis=-1, keepdims=True)
        curves = np.einsum("tqd,nd->ntq", tokens, text).max(axis=2)  # (texts, frames)
        results[mode] = (elapsed / len(frames), curves)
        print(f"{'float32' if mode is None else mode:>8}: {elapsed / len(frames):.4g} s/frame "
              f"({len(frames) / elapsed:.4g} frames/s), {len(frames)} frames, "
              f"{'ViT-g (random weights)' if args.real else 'tiny BLIP-2'}")
    (t32, c32), (t8, c8) = results[None], results["int8"]
    corr = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(c32, c8)]
    same_best = float(np.mean(c32.argmax(axis=1) == c8.argmax(axis=1)))
    print(f"int8 speed-up: {t32 / t8:.3g}x")
    print(f"curve correlation int8 vs float32: min {min(corr):.4f}, mean {np.mean(corr):.4f}; "
          f"max abs difference {np.abs(c32 - c8).max():.4g}; same best frame for {same_best:.0%} of sentences")


if __name__ == "__main__":
    main()
