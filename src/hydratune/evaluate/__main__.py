from hydratune.evaluate.command import main

main()
