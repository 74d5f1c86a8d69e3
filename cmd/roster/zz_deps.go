package main
import (
 _ "github.com/docker/docker/client"
 _ "github.com/docker/docker/api/types/container"
 _ "github.com/moby/go-archive"
 _ "github.com/moby/patternmatcher/ignorefile"
 _ "github.com/miekg/dns"
 _ "github.com/spf13/cobra"
)
func main(){}
