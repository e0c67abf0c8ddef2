"""What a run starts from: its model and optimiser at the first update, for the tests of
`Variant.initialise` (Yang's "+ init" encoder, Li et al.'s pretrained encoder)."""
import pytest

from repro import train as train_mod
from repro.train import train


class _Started(Exception):
    """Raised by the stand-in for the epoch loop: the test has seen what training starts from."""


def state_at_first_update(cfg, runs) -> dict:
    """Train `cfg` in the runs folder `runs` up to its first update, and return the model's
    `state_dict` there (`"model"`, cloned) and the optimiser's state (`"optimizer_state"`)."""
    seen = {}

    def first_update(cfg, model, optimizer, *args, **kwargs):
        seen["model"] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["optimizer_state"] = dict(optimizer.state)
        raise _Started

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "_fit", first_update)
        with pytest.raises(_Started):
            train(cfg, runs_root=runs, records_root=None, track=False, progress=False)
    return seen
