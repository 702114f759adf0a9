from __future__ import annotations

import pytest
import torch
from lightly.loss import DINOLoss as LightlyDINO

from monai_transfer.losses import DINOLoss

K = 6


def _views(n: int, b: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, K, generator=g) for _ in range(n)]


def _reference(teacher, student, center, t_temp, s_temp) -> float:
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        p_t = torch.softmax((t.double() - center.double()) / t_temp, dim=-1)
        for j, s in enumerate(student):
            if i == j:
                continue
            log_p_s = torch.log_softmax(s.double() / s_temp, dim=-1)
            total += float(-(p_t * log_p_s).sum(-1).mean())
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("n_teacher,n_student", [(2, 2), (2, 4), (1, 3)])
def test_formula_lightly_and_center(n_teacher, n_student):
    teacher, student = _views(n_teacher, seed=1), _views(n_student, seed=2)
    ours = DINOLoss(K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
    theirs = LightlyDINO(K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
    for step, epoch in enumerate([0, 2, 10]):
        teacher, student = _views(n_teacher, seed=3 + step), _views(n_student, seed=13 + step)
        center = ours.center.clone()
        t_temp = ours.teacher_temperature(epoch)
        value = ours(teacher, student, epoch=epoch)
        assert value.item() == pytest.approx(_reference(teacher, student, center, t_temp, 0.1), abs=1e-5)
        assert value.item() == pytest.approx(theirs(teacher, student, epoch=epoch).item(), abs=1e-5)
        # center: EMA of the batch mean of the teacher outputs
        expected = 0.9 * center + 0.1 * torch.stack(teacher).mean(dim=(0, 1), keepdim=True)
        assert torch.allclose(ours.center, expected, atol=1e-6)
        assert torch.allclose(ours.center, theirs.center, atol=1e-6)


def test_teacher_temperature_schedule():
    loss = DINOLoss(K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=4)
    assert [round(loss.teacher_temperature(e), 6) for e in range(6)] == [0.04, 0.05, 0.06, 0.07, 0.07, 0.07]
    assert loss.teacher_temperature(None) == 0.07
    lightly = LightlyDINO(K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=4)
    assert torch.allclose(lightly.teacher_temp_schedule.double(), torch.tensor([0.04, 0.05, 0.06, 0.07]).double())


def test_gradients_flow_to_student_only():
    teacher = [v.requires_grad_() for v in _views(2)]
    student = [v.requires_grad_() for v in _views(3, seed=5)]
    DINOLoss(K, 0.04, 0.04, 0)(teacher, student).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)


def test_center_is_a_buffer():
    assert "center" in DINOLoss(K, 0.04, 0.04, 0).state_dict()


@pytest.mark.parametrize(
    "teacher,student,match",
    [
        ([torch.randn(4, K + 1)] * 2, [torch.randn(4, K)] * 2, "shape"),
        ([torch.randn(4, K)] * 2, [torch.randn(3, K)] * 2, "batch sizes"),
        ([torch.randn(4, K)], [torch.randn(4, K)], "at least one"),
        (torch.randn(4, K), [torch.randn(4, K)] * 2, "shape"),
    ],
)
def test_bad_inputs(teacher, student, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(K, 0.04, 0.04, 0)(teacher, student)
