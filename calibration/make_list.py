"""Write a calibration-set definition (one image path per line, relative to the folder) for `rtk quantize --calib-list`.

    python calibration/make_list.py data/shapes/train -o calibration/shapes_300.txt --subset 300 --seed 0

The pick is the one `rtk quantize` makes without a list (seeded, class-balanced), so a list pins it down
for later runs and for other machines. For a flat folder (ImageNet val), the pick is a seeded shuffle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.quantize.calibration import DEFAULT_SUBSET, write_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Images: class sub-folders, or a flat folder.")
    parser.add_argument("-o", "--output", type=Path, required=True, help="Definition file to write.")
    parser.add_argument("--subset", type=int, default=DEFAULT_SUBSET, help="How many images.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the pick.")
    args = parser.parse_args()
    count = write_list(args.folder, args.output, subset=args.subset, seed=args.seed)
    print(f"wrote {count} paths to {args.output}")


if __name__ == "__main__":
    main()
