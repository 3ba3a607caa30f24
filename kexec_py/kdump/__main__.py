from kexec_py.kdump.cli import main

main()
