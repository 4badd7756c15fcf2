"""Check, before training, that a config's pretrained weights can be read.

The BUSI/TN3K configs start their backbone from ImageNet weights, as every
MMSegmentation config does (``init_cfg=dict(type='Pretrained',
checkpoint='open-mmlab://resnet50_v1c')``). MMEngine fetches them inside
``runner.train()`` (``init_weights``), after the data loaders, workers and
hooks are up; offline, the run then dies in a long urllib traceback. This
module resolves every ``Pretrained`` ``init_cfg`` the way MMEngine's
``CheckpointLoader`` does (``open-mmlab://``, ``torchvision://``,
``mmcls://``, ``http(s)://``, local files), looks for the file in torch's
hub cache (``torch.hub.get_dir()/checkpoints``, where MMEngine downloads
to), and only if it is missing asks the server whether it can be fetched.
A failure is one line naming the key, the local-file option and the
``--cfg-options`` that trains from scratch.
"""
import os.path as osp
import urllib.error
import urllib.request
from typing import Any, Callable, List, Optional, Tuple
from urllib.parse import urlparse

import torch

#: Seconds to wait for the weights' server before calling it unreachable.
DOWNLOAD_TIMEOUT = 5.0


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights named by the config cannot be read or fetched."""


def pretrained_checkpoints(node: Any, path: str = 'model'
                           ) -> List[Tuple[str, str]]:
    """``(config key, checkpoint)`` of every ``Pretrained`` init under a
    model config (``init_cfg`` dicts or lists, and the legacy
    ``pretrained='...'`` key), in config order."""
    found: List[Tuple[str, str]] = []
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            found += pretrained_checkpoints(item, f'{path}.{i}')
        return found
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        if key == 'init_cfg':
            inits = value if isinstance(value, (list, tuple)) else [value]
            for init in inits:
                if (isinstance(init, dict)
                        and str(init.get('type', '')).split('.')[-1]
                        == 'Pretrained' and init.get('checkpoint')):
                    found.append((f'{path}.init_cfg', str(init['checkpoint'])))
        elif key == 'pretrained' and isinstance(value, str) and value:
            found.append((f'{path}.pretrained', value))
        elif isinstance(value, (dict, list, tuple)):
            found += pretrained_checkpoints(value, f'{path}.{key}')
    return found


def checkpoint_url(checkpoint: str) -> Optional[str]:
    """The URL MMEngine downloads ``checkpoint`` from, or None for a local
    path (or a scheme that is not downloaded, e.g. ``s3://``)."""
    from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                            get_external_models,
                                            get_mmcls_models,
                                            get_torchvision_models)
    if checkpoint.startswith(('http://', 'https://')):
        return checkpoint
    for prefix in ('open-mmlab://', 'openmmlab://'):
        if checkpoint.startswith(prefix):
            name = checkpoint[len(prefix):]
            name = get_deprecated_model_names().get(name, name)
            url = get_external_models().get(name)
            if url is None:
                raise PretrainedWeightsError(
                    f'{checkpoint!r} is not a known OpenMMLab model name '
                    f'(mmengine/hub/openmmlab.json).')
            return url if url.startswith(('http://', 'https://')) else None
    for prefix, table in (('torchvision://', get_torchvision_models),
                          ('modelzoo://', get_torchvision_models),
                          ('mmcls://', get_mmcls_models)):
        if checkpoint.startswith(prefix):
            name = checkpoint[len(prefix):]
            urls = table()
            if name not in urls:
                raise PretrainedWeightsError(
                    f'{checkpoint!r} is not a known model name.')
            return urls[name]
    return None


def hub_cache_file(url: str) -> str:
    """Where ``torch.hub`` (and so MMEngine) keeps a download of ``url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    osp.basename(urlparse(url).path))


def download_error(url: str, timeout: float = DOWNLOAD_TIMEOUT
                   ) -> Optional[str]:
    """Why ``url`` cannot be fetched now (a short reason), or None if the
    server answers."""
    try:
        request = urllib.request.Request(url, method='HEAD')
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        return f'HTTP {err.code}'
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, 'reason', err)
        return f'{type(err).__name__}: {reason}'


def _fixes(key: str) -> str:
    file_key = (f'{key}.checkpoint' if key.endswith('init_cfg') else key)
    return (f'use a local file with --cfg-options {file_key}=/path/to/'
            f'weights.pth, or train from scratch with --cfg-options '
            f'{key}=None')


def check_pretrained_weights(
        cfg: Any,
        fetch_error: Optional[Callable[[str], Optional[str]]] = None
) -> List[str]:
    """Raise before training if a ``Pretrained`` init cannot be loaded.

    Args:
        cfg (Config or dict): The config (its ``model``).
        fetch_error (callable, optional): ``url -> reason or None``.
            Defaults to :func:`download_error` (a HEAD request).

    Returns:
        list[str]: The files the weights will be read from (local paths
        or hub-cache files), or URLs that will be downloaded.

    Raises:
        PretrainedWeightsError: A local file is missing, or a download is
            needed and the server cannot be reached; one line naming the
            config key and both ways out.
    """
    fetch_error = fetch_error or download_error
    sources = []
    for key, checkpoint in pretrained_checkpoints(cfg.get('model', {})):
        url = checkpoint_url(checkpoint)
        if url is None:
            if '://' in checkpoint:  # s3://, pavi:// ...: MMEngine decides
                sources.append(checkpoint)
                continue
            if not osp.isfile(osp.expanduser(checkpoint)):
                raise PretrainedWeightsError(
                    f'pretrained weights {checkpoint!r} ({key}) not found: '
                    f'{_fixes(key)}.')
            sources.append(checkpoint)
            continue
        cached = hub_cache_file(url)
        if osp.isfile(cached):
            sources.append(cached)
            continue
        reason = fetch_error(url)
        if reason is not None:
            raise PretrainedWeightsError(
                f'pretrained weights {checkpoint} ({key}) cannot be fetched '
                f'({reason}) and are not in {cached}: copy {url} there, '
                f'{_fixes(key)}.')
        sources.append(url)
    return sources


__all__ = [
    'DOWNLOAD_TIMEOUT', 'PretrainedWeightsError', 'check_pretrained_weights',
    'checkpoint_url', 'download_error', 'hub_cache_file',
    'pretrained_checkpoints'
]
