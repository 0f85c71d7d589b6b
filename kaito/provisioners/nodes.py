"""Building blocks for provisioner plugins: the names, labels and readiness rule every
provisioner shares, so that a third-party provisioner (AKS, AWS, your own) judges nodes exactly
as the built-in ones do.

- `node_base_name(namespace, name)`: the deterministic prefix of everything a provisioner
  creates for a workspace (`ws` + 10 hex characters), short enough for cloud naming limits.
- `workspace_labels(request)`, `selector_labels(request)`, `selector_string(labels, exprs)`:
  the labels nodes must carry and the selector that finds them.
- `list_nodes(client, selector)` and `assess_nodes(...)`: the one readiness rule (Ready, not
  terminating or cordoned, the right instance type, enough allocatable GPUs).
- `check_options(provisioner, options, known)`: reject unknown plugin options by name.
"""

from kaito.provisioners._nodes import (
    INSTANCE_TYPE_LABEL,
    allocatable_gpus,
    assess_nodes,
    check_options,
    list_nodes,
    name_of,
    node_base_name,
    node_name,
    selector_labels,
    selector_string,
    workspace_labels,
)

__all__ = [
    "INSTANCE_TYPE_LABEL",
    "allocatable_gpus",
    "assess_nodes",
    "check_options",
    "list_nodes",
    "name_of",
    "node_base_name",
    "node_name",
    "selector_labels",
    "selector_string",
    "workspace_labels",
]
