"""`python -m tests.chaos [--profile standard|overflow] [--seed N] [--platform bigcommerce|bitbybit|both]
[--duration S] [--drafts N] [--short]`."""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Optional

from tests.chaos.profile import PLATFORMS, PROFILES, STANDARD, Profile
from tests.chaos.report import render
from tests.chaos.run import run_platform


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="the seed of every fault and client choice "
                        "(default: a fresh one, printed)")
    parser.add_argument("--platform", choices=(*PLATFORMS, "both"), default="both")
    parser.add_argument("--profile", choices=PROFILES, default=STANDARD,
                        help="overflow: the bridge on `placement: overflow` against a store whose small quota makes "
                             "orders queue, with every instance killed mid-queue and Redis kept by its AOF")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults per platform")
    parser.add_argument("--drafts", type=int, default=300, help="drafts Bik confirms per platform")
    parser.add_argument("--short", action="store_true", help="the CI profile: both platforms within 90 s")
    parser.add_argument("--keep", action="store_true", help="keep each run's logs even when every invariant held")
    return parser.parse_args(argv)


def reproduce(args: argparse.Namespace, seed: int, platform: str) -> str:
    sized = "--short" if args.short else f"--duration {args.duration:g} --drafts {args.drafts}"
    kind = "" if args.profile == STANDARD else f"--profile {args.profile} "
    return f"make chaos CHAOS_ARGS='{kind}--seed {seed} --platform {platform} {sized}'"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    platforms = PLATFORMS if args.platform == "both" else (args.platform,)
    print(f"chaos run ({args.profile} profile), seed {seed}: {', '.join(platforms)}", flush=True)
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, file=sys.stderr, flush=True)

    results: dict[str, tuple] = {}

    def one(platform: str) -> None:
        profile = (Profile.short_one(seed, platform, args.profile) if args.short
                   else Profile(seed, platform, duration=args.duration, drafts=args.drafts, kind=args.profile))
        try:
            results[platform] = run_platform(profile, say, keep=args.keep)
        except Exception as exc:  # a run that could not even finish is reported, not hidden
            results[platform] = exc

    started = time.monotonic()
    # The platforms run side by side: each has its own Redis, store and instances, and the short profile
    # must fit both in 90 s.
    runs = [threading.Thread(target=one, args=(platform,), name=platform) for platform in platforms]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()

    broken = False
    for platform in platforms:
        result = results[platform]
        print()
        if isinstance(result, Exception):
            broken = True
            print(f"== {platform}, seed {seed}: the run failed: {type(result).__name__}: {result}")
            continue
        outcome, workdir = result
        print(render(outcome, reproduce(args, seed, platform)))
        if not outcome.held or args.keep:
            print(f"logs (bridges, Redis, reconcile): {workdir}")
        broken |= not outcome.held
    print(f"\nchaos run, seed {seed}: {'BROKEN' if broken else 'every invariant held'} "
          f"({time.monotonic() - started:.0f} s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
