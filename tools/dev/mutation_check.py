"""Mutation check: do the tests fail when the Hermes wiring breaks?

Each mutant is one deliberate bug: an exact snippet of a source file and its
replacement. The check copies the repository's files (tracked, plus
untracked files git does not ignore) into a temporary directory, runs the
mutant's tests there once unmutated (they must pass), then applies each
mutant in turn, runs its tests and restores the file. A mutant is *killed*
when its tests fail. The working tree is never modified, so this is safe to
run while others edit it.

The copy is imported first (``PYTHONPATH``, checked before anything runs:
``hermes_mm.__file__`` must lie in the copy, not in an editable install of
the working tree).

Exit status: 0 when every mutant is killed; 1 when a mutant survives, when a
mutant's snippet is not found exactly once (the code drifted: update the
mutant), or when the unmutated tests fail.

Usage::

    python tools/dev/mutation_check.py [--only NAME ...] [--list]
        [--out TABLE.txt] [--keep]
"""
import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SEGMENTOR = 'hermes_mm/models/segmentors/hermes_segmentor.py'
LABELER = 'hermes_mm/models/pseudo_labels/pseudo_labeler.py'
ZONES = 'hermes_mm/models/pseudo_labels/zones.py'
ADAPTIVE = 'hermes_mm/models/pseudo_labels/adaptive_dual_threshold.py'
RAMPED = 'hermes_mm/models/pseudo_labels/ramped_dual_threshold.py'
IMG_HEAD = 'hermes_mm/models/heads/image_contrast_head.py'
PIX_HEAD = 'hermes_mm/models/heads/pixel_contrast_head.py'
ICT_HEAD = 'hermes_mm/models/heads/inter_task_consistency_head.py'
ALIGN = 'hermes_mm/models/pseudo_labels/distribution_alignment.py'
TEACHER = 'hermes_mm/models/utils/teacher_ema.py'
SUPCON = 'hermes_mm/models/losses/dual_threshold_supcon_loss.py'
PIXCON = 'hermes_mm/models/losses/pixel_contrast_loss.py'
ICT = 'hermes_mm/models/losses/inter_task_consistency_loss.py'
CUTMIX = 'hermes_mm/models/utils/cutmix.py'
HOOK = 'hermes_mm/engine/hooks/teacher_threshold_update_hook.py'

T_WIRING = 'tests/models/segmentors/test_hermes_wiring.py'
T_SEGMENTOR = 'tests/models/segmentors/test_hermes_segmentor.py'
T_COMPAT = 'tests/models/segmentors/test_hermes_compat.py'
T_TRACE = 'tests/models/segmentors/test_loss_trace.py'
T_WARMUP = 'tests/models/segmentors/test_warmup_no_harm.py'
T_LABELER = 'tests/models/pseudo_labels/test_pseudo_labeler.py'
T_ZONES = 'tests/models/pseudo_labels/test_zones.py'
T_THRESHOLDS = 'tests/models/pseudo_labels/test_thresholds.py'
T_TEACHER = 'tests/models/utils/test_teacher_ema.py'
T_GUARDS = 'tests/models/segmentors/test_hermes_guards.py'
T_ALIGN = 'tests/models/pseudo_labels/test_distribution_alignment.py'
T_SUPCON = 'tests/models/losses/test_dual_threshold_supcon_loss.py'
T_PIXCON = 'tests/models/losses/test_pixel_contrast_loss.py'
T_ICT = 'tests/models/losses/test_inter_task_consistency_loss.py'
T_CUTMIX = 'tests/models/utils/test_cutmix.py'
T_HOOK = ('tests/engine/hooks/test_teacher_threshold_update_hook.py', )
T_UNMIXED = ('tests/models/segmentors/test_unmixed_image_view.py', )
T_BALANCED = ('tests/models/pseudo_labels/test_class_balanced_threshold.py',
              'tests/models/segmentors/test_hermes_guards.py')
BALANCED = 'hermes_mm/models/pseudo_labels/class_balanced_dual_threshold.py'
OUTPUTS = 'hermes_mm/models/segmentors/multi_task_segmentor.py'
SAFETY = 'hermes_mm/engine/hooks/unlabelled_safety_net_hook.py'
T_SAFETY = ('tests/engine/hooks/test_unlabelled_safety_net_hook.py', )
T_SCALE = ('tests/models/segmentors/test_hermes_guards.py', )
CLASS_DICE = 'hermes_mm/models/losses/class_wise_dice_loss.py'
T_CLASS_DICE = ('tests/models/losses/test_class_wise_dice_loss.py', )


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug.

    Attributes:
        name (str): Short unique name.
        path (str): Source file, relative to the repository root.
        original (str): Exact snippet; must occur exactly once in ``path``.
        replacement (str): What it becomes.
        tests (tuple[str]): Pytest node ids / files that must kill it.
    """
    name: str
    path: str
    original: str
    replacement: str
    tests: Tuple[str, ...]


MUTANTS: List[Mutant] = [
    # --- the four breakages named in issue 16 ---------------------------
    Mutant('teacher_labels_strong_view', SEGMENTOR,
           'self.teacher_predictions(weak_x, strong_ds)',
           'self.teacher_predictions(strong_x, strong_ds)',
           (T_WIRING, )),
    Mutant('consistency_always_skipped', ICT_HEAD,
           'pseudo.lesion_images(self.lesion_index, self.min_lesion_pixels)',
           'pseudo.lesion_images(self.lesion_index, self.min_lesion_pixels)'
           ' & False',
           (T_WIRING, )),
    Mutant('no_unlabelled_pixel_anchors', PIX_HEAD,
           'anchors = torch.cat([sup_valid, zones.reliable & region])',
           'anchors = torch.cat([sup_valid, zones.reliable & region & False])',
           (T_WIRING, )),
    Mutant('no_ambiguous_image_negatives', IMG_HEAD,
           'cls_zones.negative_classes & usable[:, None]',
           'cls_zones.negative_classes & usable[:, None] & False',
           (T_WIRING, )),
    # --- warm-up: the step is the (joint or labelled-only) supervised step
    Mutant('strong_views_update_bn_running_stats', SEGMENTOR,
           '            with frozen_bn_running_stats(self.student):\n'
           '                unsup_out = self.student.forward_train(strong_x)',
           '            if True:\n'
           '                unsup_out = self.student.forward_train(strong_x)',
           (T_WARMUP, )),
    Mutant('separate_student_forward_by_default', SEGMENTOR,
           '                 joint_student_forward: bool = True,',
           '                 joint_student_forward: bool = False,',
           (T_WARMUP, )),
    Mutant('student_forwards_weak_views', SEGMENTOR,
           '            sup_x, strong_x, plain_x, mixed)',
           '            sup_x, weak_x, plain_x, mixed)',
           (T_WARMUP, )),
    Mutant('joint_forward_keeps_bn_running_stats', SEGMENTOR,
           '            outputs = self.student.forward_train(torch.cat('
           '[sup_x, strong_x]))',
           '            with frozen_bn_running_stats(self.student):\n'
           '                outputs = self.student.forward_train('
           'torch.cat([sup_x, strong_x]))',
           (T_WARMUP, )),
    Mutant('teacher_warmup_copy_dropped', TEACHER,
           'if iteration is not None and iteration < warmup_iters:',
           'if False:',
           (T_TEACHER, )),
    # --- segmentor, heads and pseudo-labeller ----------------------------
    Mutant('no_ambiguous_pixel_negatives', PIX_HEAD,
           'zones.negative_classes & region[:, None]',
           'zones.negative_classes & region[:, None] & False',
           (T_WIRING, )),
    Mutant('pixel_targets_other_thresholds', LABELER,
           '*self.seg_thresholds), region',
           '0.5, 0.5), region',
           (T_LABELER, T_TRACE)),
    Mutant('mixed_images_keep_class', LABELER,
           'return ~self.mixed',
           'return torch.ones_like(self.mixed)',
           (T_WIRING, )),
    Mutant('dense_targets_not_mixed', SEGMENTOR,
           'teacher = dict(teacher, **dict(zip(dense, mixed_targets)))',
           'teacher = dict(teacher)',
           (T_WIRING, )),
    Mutant('unsup_cls_mean_over_reliable', SEGMENTOR,
           'avg_factor=max(weight.numel(), 1))',
           'avg_factor=max(int(weight.sum()), 1))',
           (T_WIRING, )),
    Mutant('padding_gets_pseudo_labels', LABELER,
           'seg_zones.reliable & flat_region, seg_zones.pseudo_label,',
           'seg_zones.reliable, seg_zones.pseudo_label,',
           (T_SEGMENTOR, T_LABELER)),
    Mutant('lesion_recall_over_reliable_only', LABELER,
           'lesion_truth = valid & (hidden == self.lesion_index)',
           'lesion_truth = chosen & (hidden == self.lesion_index)',
           (T_SEGMENTOR, T_LABELER)),
    Mutant('false_lesion_views_include_lesion_views', LABELER,
           'no_lesion = valid.view(per_view).any(dim=1) & ~lesion_truth.view(',
           'no_lesion = valid.view(per_view).any(dim=1) | ~lesion_truth.view(',
           (T_LABELER, )),
    # --- opt-in issue-20 guards (configs/demo/variants/*_guarded.py) ------
    Mutant('alignment_sees_no_labelled_labels', SEGMENTOR,
           'mixed=mixed, labelled_labels=sup_labels, labelled_masks',
           'mixed=mixed, labelled_labels=None, labelled_masks',
           (T_GUARDS, )),
    Mutant('alignment_ratio_inverted', ALIGN,
           'aligned = probs * ratio.to(probs.dtype)',
           'aligned = probs / ratio.to(probs.dtype)',
           (T_ALIGN, )),
    Mutant('confident_lesions_ignore_teacher', ICT_HEAD,
           'return ~pseudo.mixed & (lesion_prob >= '
           'self.min_lesion_confidence)',
           'return ~pseudo.mixed',
           (T_GUARDS, )),
    Mutant('old_checkpoints_not_renamed', SEGMENTOR,
           'self._register_load_state_dict_pre_hook(self._rename_old_state)',
           'pass',
           (T_COMPAT, )),
    # --- pseudo-labeller and thresholds ------------------------------
    Mutant('reliable_strictly_above_tau_high', ZONES,
           'reliable = confidence >= high_i',
           'reliable = confidence > high_i',
           (T_ZONES, )),
    Mutant('predicted_class_can_be_negative', ZONES,
           'ambiguous[:, None] & not_predicted',
           'ambiguous[:, None]',
           (T_ZONES, )),
    Mutant('adaptive_low_ignores_floor', ADAPTIVE,
           'low = (high - self.margin).clamp(min=self.low_floor)',
           'low = high - self.margin',
           (T_THRESHOLDS, )),
    Mutant('adaptive_unseen_class_decays', ADAPTIVE,
           'torch.where(seen, m * self.class_confidence',
           'torch.where(seen | True, m * self.class_confidence',
           (T_THRESHOLDS, )),
    Mutant('ramp_one_iteration_early', RAMPED,
           'min(1.0, (iteration - self.warmup_iters) / self.ramp_iters)',
           'min(1.0, (iteration + 1 - self.warmup_iters) / self.ramp_iters)',
           (T_THRESHOLDS, )),
    Mutant('cutmix_targets_from_self', CUTMIX,
           'dst[i, ..., region[0], region[1]] = src[j, ..., region[0],',
           'dst[i, ..., region[0], region[1]] = src[i, ..., region[0],',
           (T_CUTMIX, )),
    # --- losses ----------------------------------------------------------
    Mutant('supcon_drops_ambiguous_negatives', SUPCON,
           '~is_anchor & negative_classes.t()[anchor_labels])',
           '~is_anchor & False)',
           (T_SUPCON, )),
    Mutant('pixel_hard_negatives_from_anchors', PIXCON,
           'hard = (~anchor_mask & negative_classes[:, cls])',
           'hard = (anchor_mask & negative_classes[:, cls])',
           (T_PIXCON, )),
    Mutant('prototype_ema_swapped', PIXCON,
           'momentum * self.prototypes + (1 - momentum) * mean',
           '(1 - momentum) * self.prototypes + momentum * mean',
           (T_PIXCON, )),
    Mutant('prototype_update_skips_empty_all_reduce', PIXCON,
           'feats = F.normalize(feats.detach().to(self.prototypes.dtype)',
           'if not bool(mask.any()):\n            return\n        '
           'feats = F.normalize(feats.detach().to(self.prototypes.dtype)',
           (T_PIXCON, )),
    Mutant('consistency_map_l1', ICT,
           'per_map = (cls_attn - seg_prob).pow(2).mean(dim=(1, 2))',
           'per_map = (cls_attn - seg_prob).abs().mean(dim=(1, 2))',
           (T_ICT, )),
    # --- hook ------------------------------------------------------------
    Mutant('hook_window_one_too_long', HOOK,
           'deque(maxlen=self.precision_window)',
           'deque(maxlen=self.precision_window + 1)',
           T_HOOK),
    Mutant('hook_iteration_off_by_one', HOOK,
           'set_iteration(runner.iter)',
           'set_iteration(runner.iter + 1)',
           T_HOOK),
    Mutant('hook_thresholds_updated_with_previous_iter', HOOK,
           'labeler.update(runner.iter)',
           'labeler.update(runner.iter - 1)',
           T_HOOK),
    Mutant('hook_recall_logged_as_precision', HOOK,
           "message_hub.update_scalar(f'train/pl.{name}',",
           "message_hub.update_scalar(f'train/pl.{name}.precision',",
           T_HOOK),
    # --- the unmixed image view (issue 20) -------------------------------
    Mutant('unmixed_view_is_the_mixed_view', SEGMENTOR,
           'extra_x = plain_x[mixed] if',
           'extra_x = strong_x[mixed] if',
           T_UNMIXED),
    Mutant('image_pl_loss_on_mixed_logits', SEGMENTOR,
           'seg_gate, image_out.cls_logits)',
           'seg_gate, unsup_out.cls_logits)',
           T_UNMIXED),
    Mutant('image_contrast_on_mixed_vectors', SEGMENTOR,
           'image_out.task_feats.cls_vec]), sup_labels,',
           'unsup_out.task_feats.cls_vec]), sup_labels,',
           T_UNMIXED),
    Mutant('unmixed_flag_not_passed_to_pseudo_labels', SEGMENTOR,
           'pseudo.unmixed_image_views = self.unmixed_image_view',
           'pseudo.unmixed_image_views = False',
           T_UNMIXED),
    Mutant('consistency_on_mixed_views', ICT_HEAD,
           'return ~pseudo.mixed & (lesion_prob >=',
           'return pseudo.cls_usable & (lesion_prob >=',
           T_UNMIXED),
    Mutant('image_rows_replaced_out_of_order', OUTPUTS,
           'index_put(index, other.cls_logits)',
           'index_put(index, other.cls_logits.flip(0))',
           T_UNMIXED),
    # --- the lesion-share gate, a default since 2026-12-06 ---------------
    Mutant('gate_not_applied', SEGMENTOR,
           'losses = reweight_losses(losses, seg_gate)',
           'losses = reweight_losses(losses, 1.0)',
           (T_GUARDS, )),
    Mutant('gate_compares_pseudo_with_pseudo', SEGMENTOR,
           'self.lesion_share_gate(gt_masks, pseudo.masks',
           'self.lesion_share_gate(pseudo.masks, pseudo.masks',
           (T_GUARDS, )),
    # --- class-balanced pixel thresholds (issue 20) ----------------------
    Mutant('balanced_labelled_counts_from_pseudo_labels', LABELER,
           'labelled = labelled.flatten()',
           'labelled = zones.pseudo_label.flatten()',
           T_BALANCED),
    Mutant('balanced_histogram_ignores_region', LABELER,
           'histogram=confidence_histogram(zones, num_classes, bins, valid)',
           'histogram=confidence_histogram(zones, num_classes, bins)',
           T_BALANCED),
    Mutant('balanced_share_inverted', BALANCED,
           'wanted = self.ratio * ref_count * share[c] / share[ref]',
           'wanted = self.ratio * ref_count * share[ref] / share[c]',
           T_BALANCED),
    Mutant('balanced_threshold_can_rise', BALANCED,
           'above = [i for i in range(lowest, top) if',
           'above = [i for i in range(lowest, top + 3) if',
           T_BALANCED),
    Mutant('balanced_floor_ignored', BALANCED,
           'high = (max(above) if above else lowest) / self.histogram_bins',
           'high = (max(above) if above else 0) / self.histogram_bins',
           T_BALANCED),
    Mutant('unlabelled_scale_skips_consistency', SEGMENTOR,
           'ict=scale * self.consistency_weight(iteration))',
           'ict=self.consistency_weight(iteration))',
           T_SCALE),
    Mutant('safety_net_does_not_restore', SAFETY,
           '                model.load_state_dict(self.best_state)',
           '                pass',
           T_SAFETY),
    Mutant('safety_net_final_checkpoint_stale', SAFETY,
           '            if self._after_last_step(runner):',
           '            if False:',
           T_SAFETY),
    Mutant('safety_net_resume_forgets', SAFETY,
           'if self._loaded is not None and runner.iter > 0:',
           'if False:',
           T_SAFETY),
    Mutant('safety_net_load_from_inherits', SAFETY,
           'if self._loaded is not None and runner.iter > 0:',
           'if self._loaded is not None:',
           T_SAFETY),
    Mutant('safety_net_acts_within_tolerance', SAFETY,
           'elif score < self.best_score - self.tolerance:',
           'elif score < self.best_score:',
           T_SAFETY),
    # --- per-class Dice (issue 20's DiceLoss suspect) --------------------
    Mutant('class_dice_flattens_the_classes', CLASS_DICE,
           '        dims = (0, 2, 3)',
           '        dims = (0, 1, 2, 3)',
           T_CLASS_DICE),
    Mutant('class_dice_counts_ignored_predictions', CLASS_DICE,
           '        denom = (m * (p * p + t * t)).sum(dims)',
           '        denom = (p * p + m * t * t).sum(dims)',
           T_CLASS_DICE),
    Mutant('class_dice_per_image', CLASS_DICE,
           '        dims = (0, 2, 3)',
           '        dims = (2, 3)',
           T_CLASS_DICE),
]


def check_mutants(mutants: Sequence[Mutant], root: str = REPO) -> List[str]:
    """Problems with the mutant list against the sources under ``root``:
    duplicate names, missing files or tests, snippets not found exactly
    once, replacements equal to the original. Empty when well-formed."""
    problems = []
    names = [m.name for m in mutants]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f'duplicate mutant name {name!r}')
    for m in mutants:
        path = osp.join(root, m.path)
        if not osp.isfile(path):
            problems.append(f'{m.name}: no file {m.path}')
            continue
        with open(path, encoding='utf-8') as f:
            count = f.read().count(m.original)
        if count != 1:
            problems.append(f'{m.name}: snippet found {count} times in '
                            f'{m.path} (expected once): {m.original!r}')
        if m.original == m.replacement:
            problems.append(f'{m.name}: replacement equals the original')
        if not m.tests:
            problems.append(f'{m.name}: no tests')
        for test in m.tests:
            if not osp.isfile(osp.join(root, test.split('::')[0])):
                problems.append(f'{m.name}: no test file {test}')
    return problems


def repo_files(root: str) -> List[str]:
    """Tracked files plus untracked, not ignored ones (the working tree as
    the tests see it), relative to ``root``."""
    out = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard',
         '-z'], cwd=root, check=True, capture_output=True).stdout
    return sorted({p for p in out.decode().split('\0')
                   if p and osp.isfile(osp.join(root, p))})


def copy_repo(root: str, dst: str) -> None:
    for rel in repo_files(root):
        target = osp.join(dst, rel)
        os.makedirs(osp.dirname(target), exist_ok=True)
        shutil.copy2(osp.join(root, rel), target)


def environment(copy: str) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [copy] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    # No bytecode: a mutant and its restored original may share an mtime.
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    return env


def check_import_location(copy: str) -> str:
    """``hermes_mm.__file__`` as imported in the copy; raise unless it lies
    there (an editable install of the working tree must not win)."""
    out = subprocess.run(
        [sys.executable, '-c', 'import hermes_mm; print(hermes_mm.__file__)'],
        cwd=copy, env=environment(copy), check=True, capture_output=True,
        text=True).stdout.strip()
    real = osp.realpath(out)
    if not real.startswith(osp.realpath(copy) + os.sep):
        raise RuntimeError(f'hermes_mm is imported from {out}, not from the '
                           f'copy {copy}: the mutants would not be tested')
    return out


FAILED = re.compile(r'^(?:FAILED|ERROR) (\S+)', re.MULTILINE)


def run_tests(copy: str, tests: Sequence[str],
              timeout: float) -> Tuple[bool, Optional[str], str]:
    """Run ``tests`` in the copy: (passed, first failing test, output)."""
    cmd = [sys.executable, '-m', 'pytest', '-x', '-q', '-rfE',
           '-p', 'no:cacheprovider', '-p', 'no:warnings',
           f'--rootdir={copy}', *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=environment(copy),
                              capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return False, 'timeout', str(e.stdout or '')
    output = proc.stdout + proc.stderr
    match = FAILED.search(output)
    return proc.returncode == 0, match.group(1) if match else None, output


def mutate(copy: str, mutant: Mutant) -> str:
    """Apply ``mutant`` in the copy; return the original text."""
    path = osp.join(copy, mutant.path)
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if text.count(mutant.original) != 1:
        raise ValueError(f'{mutant.name}: snippet not found exactly once')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text.replace(mutant.original, mutant.replacement))
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', nargs='+', help='run these mutants only')
    parser.add_argument('--list', action='store_true',
                        help='list the mutants and exit')
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument('--timeout', type=float, default=900,
                        help='seconds per pytest run')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary copy')
    args = parser.parse_args(argv)

    mutants = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f'unknown mutants {sorted(unknown)}')
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f'{m.name:45s} {m.path}')
        return 0
    problems = check_mutants(mutants)
    if problems:
        print('mutant list does not match the sources:', *problems,
              sep='\n  ')
        return 1

    copy = tempfile.mkdtemp(prefix='hermes_mutants_')
    try:
        copy_repo(REPO, copy)
        print(f'copy: {copy}\nhermes_mm imported from: '
              f'{check_import_location(copy)}', flush=True)
        tests = sorted({t for m in mutants for t in m.tests})
        start = time.time()
        passed, failing, output = run_tests(copy, tests, args.timeout)
        if not passed:
            print(output[-4000:])
            print(f'unmutated tests fail ({failing}): fix them first')
            return 1
        print(f'unmutated tests pass ({time.time() - start:.0f} s)',
              flush=True)
        rows = []
        for m in mutants:
            start = time.time()
            original = mutate(copy, m)
            try:
                passed, failing, _ = run_tests(copy, m.tests, args.timeout)
            finally:
                with open(osp.join(copy, m.path), 'w',
                          encoding='utf-8') as f:
                    f.write(original)
            rows.append((m.name, osp.basename(m.path),
                         'survived' if passed else 'killed',
                         failing or ('-' if passed else '(no test id)')))
            print(f'{m.name}: {rows[-1][2]} by {rows[-1][3]} '
                  f'({time.time() - start:.0f} s)', flush=True)
    finally:
        if args.keep:
            print(f'kept {copy}')
        else:
            shutil.rmtree(copy, ignore_errors=True)

    header = ('mutant', 'file', 'result', 'killing test')
    widths = [max(len(str(r[i])) for r in rows + [header])
              for i in range(len(header))]
    lines = [' | '.join(str(c).ljust(w) for c, w in zip(row, widths))
             for row in [header] + rows]
    lines.insert(1, '-+-'.join('-' * w for w in widths))
    survivors = [r[0] for r in rows if r[2] == 'survived']
    lines.append(f'\n{len(rows) - len(survivors)} of {len(rows)} mutants '
                 'killed' + (f'; SURVIVED: {survivors}' if survivors else ''))
    table = '\n'.join(lines)
    print('\n' + table)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(table + '\n')
    return 1 if survivors else 0


if __name__ == '__main__':
    sys.exit(main())
