"""The training loop: seeded shuffling, early stopping to the best epoch, exact resume from checkpoints."""

import torch

from virtualcell.train import TrainingLoop


def _problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=g)
    y = x @ torch.tensor([[1.0], [2.0], [3.0], [4.0]])

    def step(rows):
        loss = ((model(x[rows]) - y[rows]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss}

    validate = lambda: {"val_loss": ((model(x[:50]) - y[:50]) ** 2).mean()}
    return model, optimizer, step, validate


def _train(epochs, checkpoint_dir=None, patience=None):
    model, optimizer, step, validate = _problem()
    loop = TrainingLoop(max_epochs=epochs, batch_size=32, patience=patience, checkpoint_dir=checkpoint_dir, progress=False)
    history = loop.run(200, step, validate=validate, modules={"m": model}, optimizers={"o": optimizer})
    return model, history


def test_loss_decreases_and_history_is_recorded():
    _, history = _train(8)
    assert len(history.epochs) == 8 and history.epochs[-1]["val_loss"] < history.epochs[0]["val_loss"]


def test_same_seed_same_weights():
    a, _ = _train(3)
    b, _ = _train(3)
    assert torch.equal(a.weight, b.weight)


def test_resume_from_checkpoint_is_exact(tmp_path):
    uninterrupted, _ = _train(10)
    _train(4, checkpoint_dir=tmp_path)          # "killed" after 4 epochs
    resumed, history = _train(10, checkpoint_dir=tmp_path)
    assert len(history.epochs) == 10
    assert torch.equal(uninterrupted.weight, resumed.weight)


def test_early_stopping_restores_best_epoch():
    model, optimizer, _, _ = _problem()
    calls = iter([5.0, 3.0, 4.0, 4.5, 6.0, 7.0, 8.0])
    snapshots = []

    def step(rows):
        with torch.no_grad():
            model.weight.add_(1.0)
        snapshots.append(model.weight.clone())
        return {"loss": torch.tensor(0.0)}

    loop = TrainingLoop(max_epochs=20, batch_size=1000, patience=2, progress=False)
    history = loop.run(10, step, validate=lambda: {"val_loss": next(calls)}, modules={"m": model})
    assert history.stopped_early and history.best_epoch == 1 and len(history.epochs) == 4
    assert torch.equal(model.weight, snapshots[1])
