"""Pure format logic shared by readers and writers: ComfyUI API graphs (read by the metadata reader,
edited by the regeneration), PNG text chunks (written by the A1111 client). A1111 infotext stays
with its reader in :mod:`sdeval.inputs.metadata.a1111`: nothing in the package writes one."""
