"""CPU, memory and GPU amounts as users type them, to canonical Kubernetes quantities."""
from __future__ import annotations

import pytest

from dku_ray.quantity import cpu_to_float, memory_to_bytes, parse_cpu, parse_gpu, parse_memory


@pytest.mark.parametrize("given, expected", [(1, "1"), (2.0, "2"), (0.5, "500m"), ("250m", "250m"), ("2", "2"),
                                             (0.001, "1m")])
def test_cpu(given, expected):
    assert parse_cpu(given) == expected


@pytest.mark.parametrize("given, message", [(0, "more than 0"), (-1, "more than 0"), ("abc", "not a CPU amount"),
                                            (0.0001, "finer than a millicore"), (True, "boolean")])
def test_bad_cpu(given, message):
    with pytest.raises(ValueError, match=message):
        parse_cpu(given)


@pytest.mark.parametrize("given, expected, size", [
    (4, "4Gi", 4 * 2**30), ("4Gi", "4Gi", 4 * 2**30), ("4G", "4G", 4 * 10**9), ("4", "4Gi", 4 * 2**30),
    (1.5, "1536Mi", 1536 * 2**20), ("1.5Gi", "1536Mi", 1536 * 2**20), ("4.5G", "4500M", 4_500_000_000),
    ("512Mi", "512Mi", 512 * 2**20)])
def test_memory(given, expected, size):
    assert parse_memory(given) == expected
    assert memory_to_bytes(expected) == size


@pytest.mark.parametrize("given, message", [(0, "more than 0"), (-2, "more than 0"), ("4Gb", "not a memory amount"),
                                            ("0Gi", "more than 0")])
def test_bad_memory(given, message):
    with pytest.raises(ValueError, match=message):
        parse_memory(given)


def test_gpu_and_cpu_arithmetic():
    assert parse_gpu(None) == 0 and parse_gpu(2) == 2 and parse_gpu("1") == 1
    with pytest.raises(ValueError, match="whole number"):
        parse_gpu(-1)
    assert cpu_to_float("500m") == 0.5 and cpu_to_float("2") == 2.0
