"""``systolic bitstream`` and ``systolic board-link``: options refused before any work,
and the link figures written and appended to a report."""

import re

import pytest

import systolic.hw.board.protocol as protocol
from systolic.host.cli import main
from systolic.hw.board.build import board_config


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "3"], "--size must look like 8x8 (ROWSxCOLS), not '3'"),
        (["--size", "40x4"], "rows must be between 2 and 16, not 40"),
        (["--board", "de10"], "Invalid value for '--board'"),
        (["--clk-mhz", "0"], "Invalid value for '--clk-mhz'"),
        (["--baud", "0"], "Invalid value for '--baud'"),
    ],
)
def test_bitstream_refuses_bad_options(capsys, tmp_path, args, message):
    assert main(["bitstream", "--out", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_board_link_refuses_bad_files(capsys, tmp_path):
    assert main(["board-link", "--config", str(tmp_path / "none.json")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 99}')
    assert main(["board-link", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --config {bad}: ")
    good = tmp_path / "config.json"
    good.write_text(board_config(4, 4).to_json())
    assert main(["board-link", "--config", str(good), "--report", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_board_link_figures_appended_to_the_report(capsys, tmp_path):
    cfg = board_config(4, 4)
    config = tmp_path / "config.json"
    config.write_text(cfg.to_json())
    report = tmp_path / "report.md"
    report.write_text("# bitstream report\n")
    for _ in range(2):
        assert main(["board-link", "--config", str(config), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    text = report.read_text()
    assert text.startswith("# bitstream report\n")
    assert text.count("## The link: MNIST MLP") == 2  # appended, not replaced
    rows = {
        m[0]: [int(v.replace(",", "")) for v in m[1:]]
        for m in re.findall(r"^\| ([^|]+?) \| ([\d,]+) \| ([\d,]+) \| (\d+) \|", out, re.M)
    }
    assert set(rows) == {"1 image", "32 images", "each further image"}
    for label in ("1 image", "32 images"):
        to_board, to_host, rounds = rows[label]
        # a RESET, WRITEs and READs, each a frame each way; the payload is whole beats
        assert rounds >= 3
        assert (to_board - rounds * protocol.LINK_OVERHEAD) % cfg.stream_bytes == 0
        assert (to_host - rounds * protocol.LINK_OVERHEAD) % cfg.stream_bytes == 0
    # a further image carries at least its 784 pixels to the board and its 10 logits back
    to_board, to_host, _ = rows["each further image"]
    assert to_board >= 784 and to_host >= 10
    assert rows["32 images"][0] > rows["1 image"][0]
