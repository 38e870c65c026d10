"""Feature-extraction throughput in frames per second, split into decoding
and encoding.

By default it uses a generated video and the tiny random BLIP-2 (plumbing
speed only). With --real it builds BLIP-2 ViT-g with the real checkpoint's
architecture (random weights, nothing downloaded) to measure what a GPU
does with the actual model:

    python benchmarks/bench_extract.py --real --device cuda --batch-size 128 --frames 2048
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
                           image_size=364, patch_size=14, layer_norm_eps=1e-6, qkv_bias=True),
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, vocab_size=30523, cross_attention_frequency=2,
                            max_position_embeddings=512, use_qformer_text_input=True),
        num_query_tokens=32, image_text_hidden_size=256)
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
    args = ap.parse_args()

    from tfvtg import Blip2Encoder
    from tfvtg.testing import build_tiny_blip2, make_video
    from tfvtg.video.decode import iter_frame_batches

    work = Path(tempfile.mkdtemp(prefix="tfvtg-bench-"))
    # 10 fps source sampled at 3 fps: frames/3*10 source frames
    video = make_video(work / "v.mp4", n_frames=int(args.frames / 3 * 10), fps=10, size=(640, 360))
    model_dir = real_vitg_dir(work / "vitg") if args.real else build_tiny_blip2(work / "tiny")
    enc = Blip2Encoder(model_dir, device=args.device, batch_size=args.batch_size)

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
    print(f"decode: {n / t_decode:8.1f} frames/s")
    print(f"encode: {n / t_encode:8.1f} frames/s (preprocessing included)")
    print(f"encode_video end to end: {n / t_total:8.1f} frames/s")


if __name__ == "__main__":
    main()
