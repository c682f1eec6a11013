"""Compression: pruning really zeroes weights, int8 really shrinks, accuracy is measured."""

import numpy as np
import pytest
import torch
from torch import nn

from components.compression import (
    compress,
    magnitude_prune,
    quantize_int8,
    size_on_disk,
    sparsity,
)
from components.config import CompressConfig
from components.data import load_split
from components.models import load_net
from components.training import read_train_record


@pytest.fixture(scope="module")
def net_and_test(trained_ws):
    ws, _ = trained_ws
    net, _ = load_net(read_train_record(ws).model_file)
    return net, load_split(ws.prepared, "test")


def test_magnitude_pruning_is_global_permanent_and_leaves_the_original(net_and_test):
    net, _ = net_and_test
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pruned = magnitude_prune(net, 0.6)
    assert sparsity(pruned) == pytest.approx(0.6, abs=0.01)
    assert sparsity(net) < 0.01
    assert not any("weight_orig" in k for k in pruned.state_dict())  # made permanent
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # The smallest weights went: every surviving weight outweighs every removed one.
    survivors = torch.cat([m.weight.flatten() for m in pruned.modules() if hasattr(m, "weight")])
    originals = torch.cat([m.weight.flatten() for m in net.modules() if hasattr(m, "weight")])
    removed = originals[survivors == 0].abs()
    assert removed.max() <= survivors[survivors != 0].abs().min()


def test_int8_replaces_dense_layers_and_shrinks_the_file(net_and_test):
    net, test = net_and_test
    quantized = quantize_int8(net)
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    assert size_on_disk(quantized) < size_on_disk(net) / 2
    with torch.no_grad():
        x = torch.from_numpy(test.x)
        agree = (net(x).argmax(1) == quantized(x).argmax(1)).float().mean().item()
    assert agree > 0.97


def test_compress_reports_every_variant_against_the_budget(net_and_test):
    net, test = net_and_test
    cfg = CompressConfig(prune_amount=0.5, latency_repeats=10, max_accuracy_drop=0.02)
    variants, final = compress(net, cfg, test.x, test.y, list(range(10)))
    assert [v.name for v in variants] == ["fp32", "pruned", "pruned+dynamic-int8"]
    fp32, _, int8 = variants
    assert fp32.accuracy_drop == 0 and fp32.sparsity < 0.01
    assert int8.sparsity == pytest.approx(0.5, abs=0.01)
    assert int8.size_bytes < fp32.size_bytes / 2
    assert int8.within_budget == (int8.accuracy_drop <= 0.02)
    assert all(v.latency_p95_ms >= v.latency_p50_ms > 0 for v in variants)
    assert final(torch.from_numpy(test.x[:2])).shape == (2, 10)


def test_heavy_pruning_breaks_the_budget(net_and_test):
    net, test = net_and_test
    cfg = CompressConfig(prune_amount=0.99, latency_repeats=5, max_accuracy_drop=0.005)
    variants, _ = compress(net, cfg, test.x, test.y, list(range(10)))
    assert not variants[-1].within_budget
    assert np.isclose(variants[-1].accuracy_drop, variants[0].accuracy - variants[-1].accuracy)
