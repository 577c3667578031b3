from sshrun.command import main

main()
