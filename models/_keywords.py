"""Constructor keywords the zoo does not know are refused, naming the nearest one it does know.

tsai ignores unknown keywords (its `**kwargs` swallow them), so `num_rnn_layer=5` silently builds a one-layer
model. Here every zoo class raises `TypeError: TransformerLSTMPlus() got an unexpected keyword argument
'num_rnn_layer'; did you mean 'num_rnn_layers'?`.
"""
from __future__ import annotations

import difflib
import functools
import inspect

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def keywords_of(func, skip=("self",)) -> set[str]:
    """The names `func` accepts as keywords (its **kwargs excluded)."""
    return {name for name, p in inspect.signature(func).parameters.items() if p.kind in _NAMED and name not in skip}


def unknown_keyword(owner: str, name: str, valid) -> TypeError:
    valid = sorted(set(valid))
    # deploy.errors.closest's rule, repeated here because models/ imports torch only (docs/design.md)
    nearest = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if nearest:
        hint = f"did you mean {nearest[0]!r}?"
    else:
        hint = f"valid keywords: {', '.join(valid)}" if valid else "it takes no keyword arguments"
    return TypeError(f"{owner}() got an unexpected keyword argument {name!r}; {hint}")


def check_keywords(owner: str, given, valid) -> None:
    """Raise `unknown_keyword` for the first name in `given` that is not in `valid`."""
    valid = set(valid)
    for name in given:
        if name not in valid:
            raise unknown_keyword(owner, name, valid)


def strict_keywords(cls):
    """Class decorator: calling `cls` with a keyword its __init__ does not name raises `unknown_keyword`.

    For an __init__ without **kwargs (one with **kwargs checks them itself, knowing where they go)."""
    init = cls.__init__
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
        raise TypeError(f"{cls.__name__}.__init__ takes **kwargs: check them with check_keywords instead")
    valid = frozenset(keywords_of(init))

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if not valid.issuperset(kwargs):
            check_keywords(type(self).__name__, kwargs, valid)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls
