from loadtest.entry import main

main()
