"""CLI: python -m radtriage.phantoms {examples DIR | sheet PNG | vinbigdata DIR N | mura DIR N} [--size S] [--seed K]."""

from __future__ import annotations

import argparse

from radtriage.phantoms import contact_sheet, write_app_images, write_mura, write_vinbigdata


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m radtriage.phantoms", description=__doc__)
    ap.add_argument("what", choices=["examples", "sheet", "vinbigdata", "mura"])
    ap.add_argument("out")
    ap.add_argument("n", nargs="?", type=int, default=100, help="images (vinbigdata) or studies (mura)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if a.what == "examples":
        print(write_app_images(a.out))
    elif a.what == "sheet":
        print(contact_sheet(a.out))
    elif a.what == "vinbigdata":
        print(write_vinbigdata(a.out, a.n, a.seed, a.size, workers=a.workers))
    else:
        print(write_mura(a.out, a.n, a.seed, a.size, workers=a.workers))


if __name__ == "__main__":
    main()
