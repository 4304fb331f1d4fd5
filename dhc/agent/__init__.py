"""``dhc agent``: the passive health watch on every GPU node (a DaemonSet beside training).

It follows the kernel log line by line and polls NVML, the EFA devices in sysfs and the root
filesystem every few seconds; each detector (``agent.xid``, ``agent.ecc``, ...) turns what it sees
into a ``Detection`` with a device and an action, judged against the ``agent:`` section of
thresholds.yaml. Detections go to a JSON log line and, with ``--sink kubernetes``, to the node
(conditions, and for Reboot / Replace the node-health-status label, taint, annotation and Event).
It never marks a node healthy: that is earned by the deep health check alone.
"""
