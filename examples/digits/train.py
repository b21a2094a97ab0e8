"""train: fits a one-hidden-layer MLPClassifier, one epoch at a time, writes model.pkl.

Prints {"iteration": i, "loss": ...} after each epoch (a metadata series) and
the training accuracy at the end. Deterministic for a given --seed.
"""

import argparse
import pickle

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import vh


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = vh.parse_args(parser)

    data = np.load(vh.input_file("dataset", "*.npz"))
    X, y = data["X_train"].astype(float), data["y_train"]
    scaler = StandardScaler().fit(X)
    X = scaler.transform(X)

    mlp = MLPClassifier(
        hidden_layer_sizes=(args.hidden_size,),
        learning_rate_init=args.learning_rate,
        batch_size=64,
        random_state=args.seed,
    )
    classes = np.unique(y)
    for iteration in range(1, args.max_iter + 1):
        mlp.partial_fit(X, y, classes=classes)  # one pass over the data
        vh.metadata(iteration=iteration, loss=round(float(mlp.loss_), 5))

    train_accuracy = float((mlp.predict(X) == y).mean())
    vh.metadata(train_accuracy=round(train_accuracy, 4))

    model = Pipeline([("scale", scaler), ("mlp", mlp)])
    with open(vh.output_path("model.pkl"), "wb") as f:
        pickle.dump(model, f)
    print(f"model written to {vh.output_path('model.pkl')}", flush=True)


if __name__ == "__main__":
    main()
