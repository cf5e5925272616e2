using UsageBilling.Cli;

return await CliApp.RunAsync(args).ConfigureAwait(false);
