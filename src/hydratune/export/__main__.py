from hydratune.export.command import main

main()
