"""evaluate: scores the model on the held-out test split, writes confusion_matrix.csv.

Prints {"accuracy": ..., "f1": ...} (f1: macro average over the ten classes).
"""

import argparse
import csv
import pickle

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

import vh


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    vh.parse_args(parser)

    data = np.load(vh.input_file("dataset", "*.npz"))
    X, y = data["X_test"].astype(float), data["y_test"]
    with open(vh.input_file("model", "*.pkl"), "rb") as f:
        model = pickle.load(f)  # our own train step's output

    predicted = model.predict(X)
    vh.metadata(
        accuracy=round(float(accuracy_score(y, predicted)), 4),
        f1=round(float(f1_score(y, predicted, average="macro")), 4),
        test_samples=int(len(y)),
    )

    labels = list(range(10))
    matrix = confusion_matrix(y, predicted, labels=labels)
    with open(vh.output_path("confusion_matrix.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["true\\predicted"] + labels)
        for label, row in zip(labels, matrix):
            out.writerow([label] + row.tolist())
    print(f"confusion matrix written to {vh.output_path('confusion_matrix.csv')}", flush=True)


if __name__ == "__main__":
    main()
