"""What runs under SkorchCNNFeaturizer, on the CPU: the training batches (a single-sample tail
merged, subsets followed), the augmentation (in training only, seeded), and the pickled network
(without its optimizer, trains on; the state of a CUDA net loads on a CPU-only machine).
"""

import pickle

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset
from torch.utils.data import Subset

from p53radiomics.deep._modules import RandomCropFlip
from p53radiomics.deep._net import ArrayBatches

# ----------------------------------------------------------------------------- internals


def test_array_batches_merge_single_sample_tail_and_follow_subsets(quick):
    X = np.arange(9 * 3 * 32 * 32, dtype=np.float32).reshape(9, 3, 32, 32)
    y = np.arange(9)
    train = ArrayBatches(Dataset(X, y), batch_size=4, shuffle=True)
    sizes = [len(xb) for xb, _ in train]
    assert sizes == [4, 5] and len(train) == 2
    seen = np.concatenate([yb.numpy() for _, yb in train])
    assert sorted(seen) == list(range(9))
    valid = ArrayBatches(Subset(Subset(Dataset(X, y), [1, 3, 5, 7]), [0, 2]), batch_size=4)
    ((xb, yb),) = list(valid)
    np.testing.assert_array_equal(yb.numpy(), [1, 5])
    np.testing.assert_array_equal(xb.numpy(), X[[1, 5]])
    ((xb, yb),) = list(ArrayBatches(Dataset(X, None), batch_size=16))
    assert yb is None and xb.shape == (9, 3, 32, 32)
    # A single-sample training set still trains (its one batch is not dropped).
    assert quick().fit(X[:3] / 1e4, [0, 1, 0]).predict(X[:1]).shape == (1,)


def test_augmentation_in_training_only_and_seeded():
    x = torch.randn(4, 3, 32, 32)
    augment = RandomCropFlip(0.5)
    augment.eval()
    assert augment(x) is x
    augment.train()
    torch.manual_seed(1)
    a = augment(x)
    torch.manual_seed(1)
    b = augment(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)


def test_pickled_net_leaves_the_optimizer_out_and_trains_on(tiny, quick):
    X, y = tiny()
    cnn = quick(max_epochs=2).fit(X, y)
    weights = sum(p.numel() * p.element_size() for p in cnn.net_.module_.parameters())
    blob = pickle.dumps(cnn)
    assert len(blob) < 1.5 * weights  # the network, not AdamW's two moments per weight as well
    assert "optimizer_" in cnn.net_.__dict__  # pickling did not change the original
    assert dict(cnn.net_.callbacks_)["lr_schedule"].lr_scheduler_ is not None
    loaded = pickle.loads(blob)
    np.testing.assert_allclose(loaded.predict_proba(X), cnn.predict_proba(X), rtol=1e-6)
    loaded.net_.partial_fit(X, y.astype(np.int64))  # two more epochs, with a fresh optimizer
    scheduler = dict(loaded.net_.callbacks_)["lr_schedule"].lr_scheduler_
    assert scheduler.optimizer is loaded.net_.optimizer_
    assert len(loaded.net_.history) == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_state_of_a_cuda_net_loads_on_cpu_without_warning(recwarn, tiny, quick):
    # What a net fitted on CUDA pickles, as far as a CPU-only machine can write it: device names.
    X, y = tiny()
    net = quick().fit(X, y).net_
    state = net.__getstate__()
    state.update(device="cuda", iterator_train__device="cuda", iterator_valid__device="cuda:0")
    state["module_"] = None  # not reached: skorch keeps the module in the cuda-dependent blob
    loaded = type(net).__new__(type(net))
    loaded.__setstate__(state)
    assert loaded.device == "cpu"
    assert loaded.iterator_train__device == "cpu" and loaded.iterator_valid__device == "cpu"
    assert not loaded.module_.channels_last
    assert not [w for w in recwarn if "cuda" in str(w.message).lower()]
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X), atol=1e-6)
