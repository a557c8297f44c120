"""Inputs a user meets: each bad one is one line and exit code 2, before any work."""

from faults import run_cli


def test_non_utf8_csv_is_one_line(tmp_path):
    csv = tmp_path / "photos.csv"
    csv.write_bytes("lon,lat,datetime,path\n2.35,48.85,,caf\xe9.jpg\n".encode("latin-1"))
    code, _, err = run_cli(
        "pairs", "from-csv", csv, "--imagery", "bmng", "--out", tmp_path / "p.parquet"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "is not UTF-8 (line 2" in err
    assert not (tmp_path / "p.parquet").exists()


def test_train_samples_below_the_queue_is_one_line(tmp_path):
    code, _, err = run_cli("train", "atlas", "--samples", "2000", "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "samples 2000 must be at least queue_size 8192" in err
    assert not (tmp_path / "run").exists()
