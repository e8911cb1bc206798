"""synchformer.training.metrics and .logs: offset/sync metrics on hand-built logits, ROC AUC against a brute-force
pair count, the hand-written TensorBoard event files read back byte-exact, and the plots."""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch

from synchformer.training.logs import ScalarLog, _event, _masked_crc, _record, crc32c, read_events
from synchformer.plots.training import plot_confusion, plot_roc
from synchformer.training.metrics import (confusion_matrix, offset_metrics, roc_auc, roc_curve,
                                          sync_metrics)


def _one_hot_logits(pred: list[int], n_classes: int) -> torch.Tensor:
    logits = torch.zeros(len(pred), n_classes)
    logits[torch.arange(len(pred)), torch.tensor(pred)] = 1.0
    return logits


def test_offset_metrics_hand_built():
    targets = torch.tensor([0, 1, 2, 3, 3, 6])
    pred = [0, 2, 2, 5, 3, 0]  # right, neighbour, right, two off, right, far off
    m = offset_metrics(_one_hot_logits(pred, 7), targets)
    assert m["n"] == 6
    assert m["accuracy_1"] == pytest.approx(3 / 6)
    assert m["accuracy_1_tol1"] == pytest.approx(4 / 6)
    per_class = m["per_class_accuracy"]
    assert len(per_class) == 7
    assert per_class[0] == 1.0 and per_class[1] == 0.0 and per_class[3] == 0.5 and per_class[6] == 0.0
    assert math.isnan(per_class[4]) and math.isnan(per_class[5])


def test_offset_metrics_top5():
    # the target ranks 1st, 5th and 6th
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4],
                           [9.0, 8, 7, 6, 5, 4],
                           [9.0, 8, 7, 6, 5, 4]])
    m = offset_metrics(logits, torch.tensor([0, 4, 5]))
    assert m["accuracy_1"] == pytest.approx(1 / 3)
    assert m["accuracy_5"] == pytest.approx(2 / 3)


def test_offset_metrics_two_classes():
    m = offset_metrics(_one_hot_logits([0, 1, 1], 2), torch.tensor([0, 0, 1]))
    assert m["accuracy_1"] == pytest.approx(2 / 3)
    assert m["accuracy_1_tol1"] == 1.0 and m["accuracy_5"] == 1.0


def test_confusion_matrix_counts():
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    target = torch.tensor([0, 1, 2, 2, 2, 0, 0])
    expected = torch.tensor([[2, 0, 1],
                             [0, 1, 0],
                             [0, 1, 2]])
    assert torch.equal(confusion_matrix(pred, target, 3), expected)


def _pairwise_auc(scores, labels) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).double().sum() + 0.5 * (diff == 0).double().sum()).item() / diff.numel()


def test_roc_auc_matches_pairwise_count_with_ties():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 6, (200,), generator=gen).float()  # few distinct values: many ties
        labels = torch.randint(0, 2, (200,), generator=gen)
        assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)


def test_roc_auc_known_values():
    labels = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(torch.full((4,), 0.3), labels) == 0.5
    assert math.isnan(roc_auc(torch.rand(4), torch.ones(4)))


def test_sync_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    m = sync_metrics(logits, torch.tensor([0, 0, 1, 1]))
    assert m["n"] == 4
    assert m["accuracy"] == 0.5
    # P(in sync) by row: 0.12, 0.73, 0.95, 0.27 -> positives {0.95, 0.27} beat negatives in 3 of 4 pairs
    assert m["roc_auc"] == 0.75 and "roc_auc_undefined" not in m


def test_sync_metrics_with_one_class_give_null_auc_and_why():
    m = sync_metrics(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]))
    assert m["roc_auc"] is None and "in-sync" in m["roc_auc_undefined"]
    json.dumps(m, allow_nan=False)  # valid JSON: no NaN


def test_crc32c_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # the same mask frames Snappy streams; this checksum was written by Go's snappy encoder
    assert _masked_crc(b"hello frp hello frp hello frp hello frp") == 0x8FA5EE8F


def test_event_encoding_hand_derived(tmp_path):
    expected = bytes.fromhex(
        "09" "000000000000f03f"   # field 1 (wall_time), fixed64: 1.0
        "10" "02"                 # field 2 (step), varint: 2
        "2a" "0a"                 # field 5 (summary), 10 bytes
        "0a" "08"                 # Summary.value, 8 bytes
        "0a" "01" "61"            # Value.tag = "a"
        "15" "0000003f")          # Value.simple_value, fixed32: 0.5
    assert _event(1.0, 2, scalars={"a": 0.5}) == expected
    record = _record(expected)
    assert struct.unpack("<Q", record[:8])[0] == len(expected) and record[12:-4] == expected
    (tmp_path / "events").write_bytes(record)
    assert read_events(tmp_path / "events") == [{"wall_time": 1.0, "step": 2, "scalars": {"a": 0.5}}]


def test_scalar_log_round_trip(tmp_path):
    log = ScalarLog(tmp_path / "run")
    log.add(0, loss=2.5, lr=1e-4)
    log.add(7, loss=torch.tensor(0.3333), accuracy=0.1)
    log.add(-3, loss=float("inf"))
    log.close()

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 7, -3]
    assert lines[0]["loss"] == 2.5 and lines[0]["lr"] == 1e-4 and "time" in lines[0]
    assert lines[1]["loss"] == pytest.approx(0.3333)

    (events_file,) = (tmp_path / "run").glob("events.out.tfevents.*")
    events = read_events(events_file)
    assert events[0]["file_version"] == "brain.Event:2"
    assert [e["step"] for e in events[1:]] == [0, 7, -3]
    f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]  # noqa: E731
    assert events[1]["scalars"] == {"loss": 2.5, "lr": f32(1e-4)}
    assert events[2]["scalars"] == {"loss": f32(0.3333), "accuracy": f32(0.1)}
    assert events[3]["scalars"] == {"loss": math.inf}
    assert [e["wall_time"] for e in events[1:]] == [line["time"] for line in lines]


def test_disabled_scalar_log_writes_nothing(tmp_path):
    log = ScalarLog(tmp_path / "run", enabled=False)
    log.add(1, loss=1.0)
    log.close()
    assert not (tmp_path / "run").exists()


def test_corrupted_event_file_raises(tmp_path):
    with ScalarLog(tmp_path) as log:
        log.add(1, loss=1.0)
    (events_file,) = tmp_path.glob("events.out.tfevents.*")
    data = bytearray(events_file.read_bytes())
    data[-8] ^= 0x01  # inside the last record's payload
    events_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=events_file.name):
        read_events(events_file)
    events_file.write_bytes(bytes(data[:-3]))  # truncated
    with pytest.raises(ValueError, match=events_file.name):
        read_events(events_file)


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    matrix = confusion_matrix(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), 3)
    plot_confusion(matrix, ["-0.2", "0.0", "+0.2"], tmp_path / "confusion.png", title="val")
    scores, labels = torch.rand(50), torch.randint(0, 2, (50,))
    plot_roc(*roc_curve(scores, labels), roc_auc(scores, labels), tmp_path / "roc.png")
    for name in ("confusion.png", "roc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "roc.png"]  # no temp files left
