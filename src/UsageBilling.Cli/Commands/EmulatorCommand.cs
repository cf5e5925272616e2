using System.CommandLine;
using Spectre.Console;
using UsageBilling.StripeEmulator;

namespace UsageBilling.Cli.Commands;

/// <summary><c>emulator [--port 12111] [--state-file F]</c>: runs the local Stripe emulator on 127.0.0.1 until Ctrl+C.</summary>
internal static class EmulatorCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var port = new Option<int>("--port") { Description = "Loopback port to listen on.", DefaultValueFactory = _ => 12111 };
        var stateFile = new Option<string?>("--state-file") { Description = "JSON file the state is loaded from at start and saved to at exit." };
        var command = new Command("emulator", "Run the local Stripe emulator standalone on 127.0.0.1 (Ctrl+C stops it).");
        command.Options.Add(port);
        command.Options.Add(stateFile);
        CliApp.SetHandler(command, globals, async (result, settings, ct) =>
        {
            var options = new StripeEmulatorOptions { Port = result.GetValue(port), StateFilePath = result.GetValue(stateFile) };
            try
            {
                options.Validate();
            }
            catch (ArgumentOutOfRangeException ex)
            {
                throw new CliException($"--port: {ex.Message}");
            }

            StripeEmulatorServer server;
            try
            {
                server = await StripeEmulatorServer.StartAsync(options, ct).ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                throw new CliException($"cannot listen on 127.0.0.1:{options.Port}: {ex.Message}", ExitCodes.Unavailable);
            }

            await using (server.ConfigureAwait(false))
            {
                var console = Output.Console;
                console.WriteLine($"Stripe emulator listening on {server.ApiBase} (Ctrl+C to stop).");
                console.WriteLine($"  Stripe__ApiBase={server.ApiBase} Stripe__SecretKey=sk_test_emulator (any sk_test_ key works)");
                console.WriteLine($"  admin API: {server.ApiBase}/_emulator/ with 'Authorization: Bearer {server.AdminToken}'{(options.StateFilePath is null ? "" : $"; state file {options.StateFilePath}")}");
                try
                {
                    await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    console.WriteLine("Stopping the emulator.");
                }
            }

            return ExitCodes.Ok;
        });
        return command;
    }
}
