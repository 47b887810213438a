print("lightreasoner")
