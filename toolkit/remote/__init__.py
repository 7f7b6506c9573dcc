"""Run where the model runs: the SSH channel to a device (channel.py), its content-addressed cache (cache.py),
one remote rtk call (run.py), the commands' settings as the device rtk's argv (commands.py) and the one place
that runs jobs on several devices, one job per device at a time (devices.py). The device side is remote.sh."""

from toolkit.remote.cache import DevicePath, Folder, Upload, folder_upload, upload_of
from toolkit.remote.channel import Device, RemoteError, ssh_destination
from toolkit.remote.run import DeviceInfo, RemoteRun, remote_run

__all__ = ["Device", "DeviceInfo", "DevicePath", "Folder", "RemoteError", "RemoteRun", "Upload", "folder_upload",
           "remote_run", "ssh_destination", "upload_of"]
