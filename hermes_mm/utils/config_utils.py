"""Config helpers shared by ``tools/train.py``, ``tools/test.py`` and the
inferencer: dataset rewriting for ``--data-root/--split-file`` and
machine-dependent defaults."""
from typing import Any, Iterator, List, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def iter_dataset_cfgs(cfg: Any, path: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(path, dataset_cfg)`` for every dataset config under ``cfg``.

    Wrappers (``ConcatDataset``'s ``datasets``, ``RepeatDataset``'s
    ``dataset``) are walked into; a dataset is any dict with a ``type``.
    """
    if isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            yield from iter_dataset_cfgs(item, f'{path}[{i}]')
        return
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return
    yield path, cfg
    if 'dataset' in cfg:
        yield from iter_dataset_cfgs(cfg['dataset'], f'{path}.dataset')
    if 'datasets' in cfg:
        yield from iter_dataset_cfgs(cfg['datasets'], f'{path}.datasets')


def iter_loader_datasets(
        cfg: Config,
        loader_keys: Tuple[str, ...] = DATALOADER_KEYS
) -> Iterator[Tuple[str, dict]]:
    """``(path, dataset_cfg)`` of every dataset (wrappers and their leaves,
    see :func:`iter_dataset_cfgs`) of the dataloaders ``loader_keys`` that
    the config has, paths like ``train_dataloader.dataset.datasets.0``."""
    for loader_key in loader_keys:
        loader = cfg.get(loader_key)
        if loader:
            yield from iter_dataset_cfgs(loader.get('dataset'),
                                         f'{loader_key}.dataset')


def rewrite_datasets(cfg: Config,
                     data_root: Optional[str] = None,
                     split_file: Optional[str] = None) -> List[str]:
    """Point every dataset of ``cfg`` at ``data_root`` / ``split_file``.

    Every dataset config that has a ``data_root`` key gets the new root;
    every one with a ``split_file`` key gets the new split. Datasets of the
    train, val and test dataloaders (and wrappers inside them) are covered.

    Args:
        cfg (Config): Loaded config, modified in place.
        data_root (str, optional): New data root.
        split_file (str, optional): New split JSON (tools/make_split.py).

    Returns:
        list[str]: Config paths of the datasets that were changed.

    Raises:
        ValueError: If an option was given but no dataset accepts it.
    """
    changed = []
    accepted = dict(data_root=False, split_file=False)
    for path, ds_cfg in iter_loader_datasets(cfg):
        touched = False
        for key, value in (('data_root', data_root),
                           ('split_file', split_file)):
            if value is not None and key in ds_cfg:
                ds_cfg[key] = value
                accepted[key] = touched = True
        if touched:
            changed.append(f"{path} ({ds_cfg['type']})")
    for key, value in (('data_root', data_root), ('split_file', split_file)):
        if value is not None and not accepted[key]:
            raise ValueError(
                f'--{key.replace("_", "-")} {value} was given but no dataset '
                f'in the config has a `{key}` key to set')
    if changed:
        print_log(
            'Datasets pointed at '
            f'data_root={data_root} split_file={split_file}: '
            + ', '.join(changed), logger='current')
    return changed


def config_with_overrides(path: str,
                          cfg_options: Optional[dict] = None,
                          data_root: Optional[str] = None,
                          split_file: Optional[str] = None) -> Config:
    """``path`` loaded, ``--cfg-options`` merged and every dataset pointed
    at ``data_root`` / ``split_file`` (see :func:`rewrite_datasets`): the
    config a tool works on."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    rewrite_datasets(cfg, data_root=data_root, split_file=split_file)
    return cfg


def load_config(path: str) -> Config:
    """``Config.fromfile`` without yapf re-formatting of the config text.

    MMEngine 0.10.7 formats the whole config with yapf every time its text
    is needed (about 2 s for a Hermes config on a CPU core) and the Runner
    asks for it several times at start-up and at every checkpoint save;
    ``fromfile(format_python_code=False)`` does not reach the text property.
    The unformatted text is valid Python and loads back to the same config.
    """
    cfg = Config.fromfile(path)
    return Config(cfg.to_dict(), filename=path, format_python_code=False)


def set_dist_backend(cfg: Config, cuda_available: bool) -> None:
    """Use 'gloo' instead of 'nccl' when the machine has no CUDA GPU."""
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict(backend='nccl'))
    if not cuda_available and dist_cfg.get('backend') == 'nccl':
        dist_cfg['backend'] = 'gloo'


def to_jsonable(value: Any) -> Any:
    """Convert metric values (numpy/torch scalars, arrays) to JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, 'tolist'):
        return value.tolist()
    if hasattr(value, 'item'):
        return value.item()
    return value
