"""The study's learning-rate choice on the validation split and its Pareto front."""

from common.runs import Run
from common.study import choose_lr, choose_lr_in_run, pareto_front


def test_choose_lr_takes_the_best_validation_score_and_the_smaller_lr_on_a_tie():
    scores = {0.1: 50.0, 0.01: 70.0, 0.001: 70.0}
    calls = []
    lr, seen = choose_lr(lambda lr, n: calls.append((lr, n)) or scores[lr], [0.1, 0.01, 0.001], 7, log=lambda s: None)
    assert lr == 0.001 and seen == scores and calls == [(0.1, 7), (0.01, 7), (0.001, 7)]


class _RunFolder:
    """The part of common.runs.Run that the pilots use: JSON files in a folder."""

    read_json, write_json, read_only = Run.read_json, Run.write_json, False

    def __init__(self, path):
        self.dir = path


def test_pilots_are_kept_in_the_run_folder_and_a_resumed_choice_does_not_rerun_them(tmp_path):
    run = _RunFolder(tmp_path)
    calls = []

    def pilot(lr, n):
        calls.append(lr)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second pilot
        return {0.1: 40.0, 0.01: 60.0, 0.001: 55.0}[lr]

    try:
        choose_lr_in_run(run, pilot, [0.1, 0.01, 0.001], 5)
    except KeyboardInterrupt:
        pass
    calls.clear()
    lr, seen = choose_lr_in_run(run, lambda lr, n: calls.append(lr) or {0.01: 60.0, 0.001: 55.0}[lr],
                                [0.1, 0.01, 0.001], 5)
    assert calls == [0.01, 0.001]  # the finished pilot (0.1) is read back, not re-run
    assert lr == 0.01 and seen == {0.1: 40.0, 0.01: 60.0, 0.001: 55.0}


def test_pareto_front_keeps_only_points_no_other_beats_in_size_and_accuracy():
    points = [(32.0, 90.0), (1.0, 60.0), (4.0, 88.0), (4.0, 80.0), (8.0, 87.0), (2.0, 50.0)]
    assert pareto_front(points) == [1, 2, 0]


def test_choose_setting_lr_runs_the_settings_pilots_cut_to_a_dry_run_records_the_choice_and_skips_a_grid_of_one(tmp_path):
    from common.settings import get_setting
    from common.study import choose_setting_lr

    setting = get_setting("cifar10_resnet20")
    steps = []
    scores = {0.1: 40.0, 0.01: 60.0}
    lr, fields = choose_setting_lr(_RunFolder(tmp_path), setting, (0.1, 0.01),
                                   lambda lr, n: steps.append(n) or scores[lr])
    assert lr == 0.01 and steps == [setting.lr_pilot_steps] * 2
    assert fields == {"lr": 0.01, "lr_grid": [0.1, 0.01], "pilot_steps": setting.lr_pilot_steps,
                      "lr_pilots_val_top1": {"0.1": 40.0, "0.01": 60.0}}
    steps.clear()
    _, fields = choose_setting_lr(_RunFolder(tmp_path / "dry"), setting, (0.1, 0.01),
                                  lambda lr, n: steps.append(n) or 1.0, max_steps=2)
    assert steps == [2, 2] and fields["pilot_steps"] == 2
    steps.clear()
    lr, fields = choose_setting_lr(_RunFolder(tmp_path / "one"), setting, (0.03,), lambda lr, n: steps.append(n) or 1.0)
    assert lr == 0.03 and steps == [] and fields["pilot_steps"] == 0 and fields["lr_pilots_val_top1"] == {}


def test_lr_provenance_names_the_seeds_whose_pilots_chose_the_lr_and_flags_an_end_of_the_grid():
    from types import SimpleNamespace

    from common.study import lr_provenance

    def row(seed, lr, grid, pilots):
        return SimpleNamespace(seed=seed, extra={"lr": lr, "lr_grid": grid, "pilot_steps": 350 if pilots else 0})

    chosen_inside = [row(0, 0.01, [0.003, 0.01, 0.03], True), row(1, 0.01, [0.01], False), row(2, 0.01, [0.01], False)]
    assert lr_provenance(chosen_inside) == ("LR 0.01 (chosen on the validation split by the pilots of seed 0, "
                                            "given to seeds 1, 2)")
    at_the_edge = [row(0, 0.003, [0.003, 0.01, 0.03], True)]
    assert lr_provenance(at_the_edge).endswith("the pilots chose the smallest LR of their grid 0.003, 0.01, 0.03")
    assert lr_provenance([row(0, 0.01, [0.01], False)]) == "LR 0.01"  # given, nothing chosen
    assert lr_provenance([SimpleNamespace(seed=0, extra={})]) == ""


def test_start_run_refuses_a_method_whose_float_layers_are_not_the_settings(tmp_path):
    import dataclasses

    import pytest

    from common.errors import NnqError
    from common.settings import get_setting
    from common.study import load_data, start_run
    from papers.lsq.config import PRESETS

    setting = get_setting("cifar10_resnet20")
    cfg = dataclasses.replace(PRESETS["cifar10_resnet20"], out_dir=str(tmp_path), limit_train=64, limit_test=16)
    try:
        load_data(setting, limit_train=64, limit_test=16)
    except NnqError as exc:  # the shared CIFAR-10 copy is not on this machine
        pytest.skip(str(exc))
    with pytest.raises(NnqError, match=r"keeps \('conv1', 'linear'\) float; LSQ keeps \('conv1',\)"):
        start_run(cfg, "lsq", "key", {setting.arch: ("conv1",)}, "LSQ")
    assert not (tmp_path / "lsq").exists()  # no run folder for a refused run
