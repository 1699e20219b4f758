"""simdev device plugin: simulated devices served to the kubelet over the v1beta1 API.

Layout: ``config`` (settings), ``limits`` (bounds the operator shares), ``devices``,
``allocation``, ``policies`` (preferred allocations), ``faults``, ``pools`` (per-node
settings) and ``simulation`` (the simulated device model and its live behaviour, no gRPC),
``service`` (gRPC servicer over the model), ``server``, ``kubelet`` and ``supervisor``
(socket, registration and restart handling, no device knowledge), ``apiwatch`` and
``follow`` (live changes from the Kubernetes API), ``logs``, ``healthcheck`` and ``main``
(command line), ``fakekubelet`` (a kubelet stand-in for tests and demos), ``podresources``
(the kubelet's pod-resources client), ``api`` (generated protocols).
"""
