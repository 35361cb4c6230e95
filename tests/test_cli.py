import json

import anndata as ad
import numpy as np
import pytest
from helpers import make_marker_counts

from scvi_cfgen import CFGenModel
from scvi_cfgen._cli import main


def test_train_then_generate_from_the_shell(tmp_path):
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=120).write_h5ad(data)
    model_dir = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(data),
                "--model-dir",
                str(model_dir),
                "--attributes",
                "cell_type",
                "--n-latent",
                "4",
                "--max-epochs-autoencoder",
                "2",
                "--max-epochs-flow",
                "2",
                "--batch-size",
                "32",
                "--realism-filter",
                "--size-factor-law",
                "empirical",
            ]
        )
        == 0
    )
    assert CFGenModel.load(model_dir).module.statistics.fitted_size_factor_law == "empirical"
    out = tmp_path / "generated.h5ad"
    assert (
        main(
            [
                "generate",
                str(model_dir),
                "--output",
                str(out),
                "--n-cells",
                "25",
                "--condition",
                "cell_type=type2",
                "--solver",
                "euler",
                "--n-steps",
                "5",
            ]
        )
        == 0
    )
    generated = ad.read_h5ad(out)
    assert generated.shape == (25, 40)
    assert (generated.obs["cell_type"] == "type2").all()
    like = tmp_path / "like.h5ad"
    assert main(["generate", str(model_dir), "--output", str(like), "--like", str(data)]) == 0
    assert ad.read_h5ad(like).n_obs == 120
    filtered = tmp_path / "filtered.h5ad"
    args = ["generate", str(model_dir), "--output", str(filtered), "--n-cells", "30"]
    assert main([*args, "--keep-fraction", "0.5"]) == 0
    assert np.isfinite(ad.read_h5ad(filtered).obs["realism_score"]).all()


def test_cli_reports_bad_input_as_an_error(tmp_path, capsys):
    data = tmp_path / "bad.h5ad"
    cells = make_marker_counts(n_cells=50)
    cells.X = cells.X * 0.5
    cells.write_h5ad(data)
    code = main(
        ["train", str(data), "--model-dir", str(tmp_path / "m"), "--attributes", "cell_type"]
    )
    assert code == 2
    assert "non-integer" in capsys.readouterr().err


def test_demo_writes_its_outputs(tmp_path):
    outdir = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--outdir",
                str(outdir),
                "--n-cells",
                "250",
                "--max-epochs-autoencoder",
                "1",
                "--max-epochs-flow",
                "1",
            ]
        )
        == 0
    )
    generated = ad.read_h5ad(outdir / "generated.h5ad")
    assert generated.n_obs == 50  # the held-out 20 % of 250 cells
    assert generated.n_vars == 9648
    assert np.array_equal(generated.X.data, np.round(generated.X.data))
    assert (outdir / "real_vs_generated.png").stat().st_size > 10_000
    assert (outdir / "training_history.png").exists()
    summary = json.loads((outdir / "summary.json").read_text())
    assert summary["generated_cells"] == 50
    assert 0 <= summary["knn_label_agreement"]["overall"] <= 1


def test_cli_train_checkpoints_and_resumes(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=120).write_h5ad(data)
    common = ["train", str(data), "--attributes", "cell_type", "--n-latent", "4"]
    budgets = ["--max-epochs-autoencoder", "2", "--max-epochs-flow", "2", "--seed", "3"]
    checkpoints = ["--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main([*common, *budgets, *checkpoints, "--model-dir", str(tmp_path / "a")]) == 0
    assert (tmp_path / "ckpt" / "flow.pt").is_file()
    # resuming a finished run only loads its stages: the same weights, the same cells
    again = [*common, *budgets, *checkpoints, "--resume", "--model-dir", str(tmp_path / "b")]
    assert main(again) == 0
    cells = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.h5ad"
        args = ["generate", str(tmp_path / name), "--output", str(out), "--n-cells", "20"]
        assert main([*args, "--solver", "euler", "--n-steps", "4"]) == 0
        cells.append(ad.read_h5ad(out).X.toarray())
    np.testing.assert_array_equal(*cells)
    capsys.readouterr()
    assert main([*common, "--resume", "--model-dir", str(tmp_path / "c")]) == 2
    assert "--resume needs the --checkpoint-dir" in capsys.readouterr().err


def test_cli_refuses_an_unknown_flow_precision_before_training(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=60).write_h5ad(data)
    args = ["train", str(data), "--model-dir", str(tmp_path / "m"), "--flow-precision", "half"]
    assert main(args) == 2
    assert "bf16-mixed" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_cli_trains_on_clusters_without_labels(tmp_path):
    pytest.importorskip("igraph")
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=120).write_h5ad(data)
    model_dir = tmp_path / "model"
    train = ["train", str(data), "--model-dir", str(model_dir), "--n-latent", "4"]
    budgets = ["--max-epochs-autoencoder", "2", "--max-epochs-flow", "2", "--batch-size", "32"]
    assert main([*train, *budgets, "--cluster-resolution", "1.0"]) == 0
    out = tmp_path / "generated.h5ad"
    generate = ["generate", str(model_dir), "--output", str(out), "--n-cells", "12"]
    assert (
        main([*generate, "--condition", "cluster=0", "--solver", "euler", "--n-steps", "3"]) == 0
    )
    generated = ad.read_h5ad(out)
    assert (generated.obs["cluster"] == "0").all()
    assert main([*train, *budgets, "--cluster-resolution", "0", "--overwrite"]) == 2


def test_cli_trains_a_cellflow_model(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_marker_counts(n_cells=120).write_h5ad(data)
    model_dir = tmp_path / "model"
    train = ["train", str(data), "--model-dir", str(model_dir), "--attributes", "cell_type"]
    budgets = ["--max-epochs-autoencoder", "2", "--max-epochs-flow", "2", "--batch-size", "32"]
    assert main([*train, *budgets, "--latent", "genes", "--n-latent", "4"]) == 2
    assert "leave out `n_latent`" in capsys.readouterr().err
    assert main([*train, *budgets, "--latent", "genes"]) == 0
    out = tmp_path / "generated.h5ad"
    generate = ["generate", str(model_dir), "--output", str(out), "--n-cells", "12"]
    assert main([*generate, "--condition", "cell_type=type1", "--solver", "euler"]) == 0
    generated = ad.read_h5ad(out)
    assert generated.shape == (12, 40)
    assert (generated.obs["cell_type"] == "type1").all()
    assert CFGenModel.load(model_dir).module.n_latent == 40
