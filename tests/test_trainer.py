"""The task-independent half of a shard trainer: members that shrink together, the record."""

import torch

from grokking.trainer import RESULT_KEYS, Members, new_members


def test_members_shrink_together_and_results_set_every_result_tensor():
    m = new_members(4, torch.device("cpu"), inputs=torch.arange(8).view(4, 2))
    m.t_train = torch.tensor([5, -1, 7, -1])
    m.results = tuple(torch.full((4,), k) for k in range(len(RESULT_KEYS)))  # the property, not a new tensor
    assert [int(getattr(m, key)[0]) for key in RESULT_KEYS] == list(range(len(RESULT_KEYS)))
    kept = m.select(torch.tensor([1, 3]))
    assert kept.ids.tolist() == [1, 3] and kept.inputs.tolist() == [[2, 3], [6, 7]] and len(kept) == 2
    assert len(m) == 4  # the original is untouched
    assert isinstance(kept, Members)
