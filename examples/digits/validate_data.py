"""validate-data: loads scikit-learn's digits, checks it, splits it, writes digits.npz.

Checks: 64 features (8x8 images), finite integer pixel values 0..16, labels
0..9, every class present and none below --min-class-fraction of the samples.
Exits 1, naming each problem, when one fails. --corrupt injects bad rows so
that the failure path can be tried.
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import vh

FEATURES = 64  # 8 x 8 pixels
PIXEL_MAX = 16
CLASSES = 10
SPLIT_SEED = 0


def corrupt(X, y):
    """Out-of-range and missing pixels, unknown labels, and most of class 0 gone."""
    X, y = X.copy(), y.copy()
    X[0, 5] = -1
    X[1, 7] = 255
    X[2, 9] = np.nan
    y[3] = 12
    keep = np.ones(len(y), dtype=bool)
    keep[np.flatnonzero(y == 0)[20:]] = False
    return X[keep], y[keep]


def problems(X, y, min_class_fraction):
    found = []
    if X.ndim != 2 or X.shape[1] != FEATURES:
        return [f"want {FEATURES} features (8x8 images), got shape {X.shape}"]
    if len(X) != len(y):
        return [f"{len(X)} samples but {len(y)} labels"]
    bad = ~np.isfinite(X)
    if bad.any():
        found.append(f"{bad.any(axis=1).sum()} rows with missing or infinite pixels (first row {np.flatnonzero(bad.any(axis=1))[0]})")
    finite = np.where(bad, 0, X)
    out = (finite < 0) | (finite > PIXEL_MAX) | (finite != np.round(finite))
    if out.any():
        rows = np.flatnonzero(out.any(axis=1))
        found.append(f"{len(rows)} rows with pixels outside the integers 0..{PIXEL_MAX} (first row {rows[0]}: min {finite[rows[0]].min():g}, max {finite[rows[0]].max():g})")
    unknown = ~np.isin(y, np.arange(CLASSES))
    if unknown.any():
        found.append(f"{unknown.sum()} labels outside 0..{CLASSES - 1}: {sorted(set(y[unknown].tolist()))}")
    counts = np.bincount(y[~unknown].astype(int), minlength=CLASSES)
    fractions = counts / len(y)
    for label in np.flatnonzero(fractions < min_class_fraction):
        found.append(f"class {label} has {counts[label]} samples ({fractions[label]:.3f} of {len(y)}), below --min-class-fraction={min_class_fraction}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min-class-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--corrupt", action="store_true")
    args = vh.parse_args(parser)

    X, y = load_digits(return_X_y=True)
    if args.corrupt:
        X, y = corrupt(X, y)
        print("injected bad rows (--corrupt)", flush=True)

    counts = np.bincount(y[(y >= 0) & (y < CLASSES)].astype(int), minlength=CLASSES)
    vh.metadata(
        samples=int(len(y)),
        features=int(X.shape[1]),
        classes=int((counts > 0).sum()),
        min_class_fraction=round(float(counts.min() / len(y)), 4),
        pixel_min=float(np.nanmin(X)),
        pixel_max=float(np.nanmax(X)),
    )

    found = problems(X, y, args.min_class_fraction)
    vh.metadata(problems=len(found))
    if found:
        # The data is written all the same, so that it can be looked at.
        np.savez_compressed(vh.output_path("digits.npz"), X=X, y=y)
        vh.fail("the data failed validation:\n  " + "\n  ".join(found))

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_fraction, stratify=y, random_state=SPLIT_SEED
    )
    np.savez_compressed(
        vh.output_path("digits.npz"),
        X_train=X_train.astype(np.uint8), y_train=y_train.astype(np.uint8),
        X_test=X_test.astype(np.uint8), y_test=y_test.astype(np.uint8),
    )
    vh.metadata(train_samples=len(y_train), test_samples=len(y_test))
    print(f"ok: {len(y)} samples, {CLASSES} classes, written to {vh.output_path('digits.npz')}", flush=True)


if __name__ == "__main__":
    main()
