"""The scheduler's questions before a move: room, and capabilities."""

# Cinder asks them in its scheduler (CapacityFilter, CapabilitiesFilter)
# before it migrates; rbdmig on its own asks them in its service.  Each
# answer is None (the destination will do) or one sentence saying why not.

import math
import operator

from oslo_utils import strutils

GiB = 1 << 30
# Cinder's max_over_subscription_ratio default.
DEFAULT_OVER_SUBSCRIPTION = 20.0


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # 'unknown', 'infinite', missing


def room(capabilities, size_gib, data_bytes):
    """Why the destination cannot take the volume, or None if it can.

    Cinder's ``CapacityFilter``, thin-aware: ``reserved_percentage`` of the
    total is never offered; on a thin backend the provisioned size counts
    against ``max_over_subscription_ratio`` (virtual room) and the data
    the volume actually holds against the free space (physical room); on
    a thick one, the whole size against the free space.

    :param capabilities: the destination's stats.
    :param size_gib: the volume's provisioned size.
    :param data_bytes: what the volume holds (allocated bytes).
    """
    free = _number(capabilities.get('free_capacity_gb'))
    total = _number(capabilities.get('total_capacity_gb'))
    if free is None or total is None:
        return None  # the backend does not know: Cinder lets it try
    reserved = math.floor(total * float(
        capabilities.get('reserved_percentage') or 0) / 100)
    usable = free - reserved
    thin = strutils.bool_from_string(
        capabilities.get('thin_provisioning_support', False))
    if not thin:
        if size_gib > usable:
            return ('it needs %d GiB and the destination offers %.2f GiB '
                    '(%.2f free, %d reserved).' % (size_gib, usable, free,
                                                   reserved))
        return None
    # Cinder's default when a backend does not say (a thin backend that
    # reports no ratio is not limited to its own size).
    ratio = _number(capabilities.get('max_over_subscription_ratio')) or (
        DEFAULT_OVER_SUBSCRIPTION)
    provisioned = _number(capabilities.get(
        'provisioned_capacity_gb')) or (total - free)
    if total and (provisioned + size_gib) / total > ratio:
        return ('its %d GiB would provision the destination to %.2f times '
                'its size, above its max_over_subscription_ratio %.1f.'
                % (size_gib, (provisioned + size_gib) / total, ratio))
    if data_bytes / GiB > usable:
        return ('it holds %.2f GiB of data and the destination offers '
                '%.2f GiB (%.2f free, %d reserved).' % (
                    data_bytes / GiB, usable, free, reserved))
    return None


_OPERATORS = {
    '==': lambda a, b: _number(a) == _number(b),
    '!=': lambda a, b: _number(a) != _number(b),
    '>=': lambda a, b: _number(a) is not None and _number(a) >= _number(b),
    '<=': lambda a, b: _number(a) is not None and _number(a) <= _number(b),
    '>': lambda a, b: _number(a) is not None and _number(a) > _number(b),
    '<': lambda a, b: _number(a) is not None and _number(a) < _number(b),
    's==': operator.eq, 's!=': operator.ne,
    '<in>': lambda a, b: b in str(a),
    '<is>': lambda a, b: strutils.bool_from_string(a) ==
    strutils.bool_from_string(b),
}


def _satisfies(actual, requirement):
    words = str(requirement).split()
    if words and words[0] == '<or>':
        return any(str(actual) == w for w in words[1:] if w != '<or>')
    if len(words) == 2 and words[0] in _OPERATORS:
        if actual is None:
            return False
        return _OPERATORS[words[0]](str(actual), words[1])
    return str(actual) == str(requirement)


def capabilities(capabilities_, extra_specs):
    """Why the destination lacks what the volume's specs require, or None.

    Cinder's ``CapabilitiesFilter`` rules: a key (``capabilities:`` prefix
    optional; keys scoped otherwise, like ``qos:``, are not capabilities)
    must match the capability of that name, by equality or an operator
    (``<is> True``, ``>= 10``, ``<in> ssd``, ``<or> a <or> b``...).
    ``volume_backend_name`` is left out: choosing the destination is the
    request's job.
    """
    for key, requirement in sorted((extra_specs or {}).items()):
        if ':' in key:
            scope, name = key.split(':', 1)
            if scope != 'capabilities':
                continue
            key = name
        if key == 'volume_backend_name':
            continue
        actual = capabilities_.get(key)
        if not _satisfies(actual, requirement):
            return ('its extra spec %s=%s is not met by the destination '
                    '(%s).' % (key, requirement, actual))
    return None
