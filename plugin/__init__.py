"""simdev device plugin: simulated devices served to the kubelet over the v1beta1 API.

Layout: ``config`` (settings), ``devices`` and ``allocation`` (the simulated device
model, no gRPC), ``devnodes`` (host device files), ``service`` (gRPC servicer over the
model), ``server``, ``kubelet`` and ``supervisor`` (socket, registration and restart
handling, no device knowledge), ``logs``, ``healthcheck`` and ``main`` (command line),
``fakekubelet`` (a kubelet stand-in for tests and demos), ``api`` (generated protocol).
"""
