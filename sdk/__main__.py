from sdk.endpoint import main

main()
