import pytest

from sim2real.stats import percentile


def test_nearest_rank_percentile():
    values = [float(v) for v in range(200, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 101.0
    assert percentile(values, 99) == 198.0
    assert percentile(values, 100) == 200.0
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
