"""Helpers shared by the benchmark scripts (not part of the package).

What every benchmark records about where it ran (machine, threads,
versions), how results are printed (plain text tables) and written (JSON).
Kept free of model code so both scripts can import it cheaply.
"""
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

#: Repository root (benchmarks/..): configs are resolved against it.
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else ``platform``'s guess."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> Optional[str]:
    """``git describe --always --dirty`` of the repository, if available."""
    try:
        out = subprocess.run(
            ['git', 'describe', '--always', '--dirty'],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = 'cpu') -> Dict[str, Any]:
    """Machine, library versions and thread settings, for the result JSON."""
    import torch
    info: Dict[str, Any] = dict(
        hostname=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        load_average=list(os.getloadavg()) if hasattr(os, 'getloadavg')
        else None,
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
        cuda_available=torch.cuda.is_available(),
        git=git_revision(),
        argv=sys.argv,
        started=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    )
    for name in ('mmengine', 'mmseg', 'mmpretrain', 'mmcv', 'hermes_mm',
                 'numpy'):
        try:
            module = __import__(name)
            info[name] = getattr(module, '__version__', '?')
        except Exception as exc:  # noqa: BLE001 - record, do not fail
            info[name] = f'not importable ({type(exc).__name__})'
    if device.startswith('cuda') and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version())
    return info


def median(values: Sequence[float]) -> Optional[float]:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


def summary(values: Sequence[float]) -> Dict[str, Any]:
    """Median, min, max and the raw values (seconds)."""
    return dict(
        median=median(values),
        min=min(values) if values else None,
        max=max(values) if values else None,
        n=len(values),
        values=list(values))


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as '-'."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
          digits: int = 3) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    line = lambda items: '| ' + ' | '.join(  # noqa: E731
        str(x).ljust(w) for x, w in zip(items, widths)) + ' |'
    out = [line(headers), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    out.extend(line(r) for r in cells)
    return '\n'.join(out)


def synthetic_test_set(cache_dir: str, tag: str, num: int,
                       generator_seed: int,
                       style: str = 'default') -> Dict[str, Any]:
    """Config overrides (``cfg.merge_from_dict`` / ``--cfg-options`` keys)
    that make a synthetic config's test set ``num`` freshly generated
    images of ``generator_seed``, all of them (``subset=None``), generated
    on first use into ``cache_dir/synthetic_busi_<tag>_n<num>_seed<seed>``
    (``_<style>`` appended for a style other than 'default').
    """
    prefix = 'test_dataloader.dataset.'
    suffix = '' if style == 'default' else f'_{style}'
    root = osp.join(
        cache_dir, f'synthetic_busi_{tag}_n{num}_seed{generator_seed}'
        f'{suffix}')
    out = {
        f'{prefix}data_root': root,
        f'{prefix}num': num,
        f'{prefix}generator_seed': generator_seed,
        f'{prefix}subset': None
    }
    if style != 'default':
        out[f'{prefix}style'] = style
    return out


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON, creating the folder."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def rows_to_markdown(title: str, headers: List[str],
                     rows: List[List[Any]]) -> str:
    return f'### {title}\n\n{table(headers, rows)}\n'
