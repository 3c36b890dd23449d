"""Pure format logic shared by readers and writers: ComfyUI graphs, A1111 infotext, PNG text chunks."""
