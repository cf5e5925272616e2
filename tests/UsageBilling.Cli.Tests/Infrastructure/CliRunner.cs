using System.Diagnostics;
using System.Reflection;

namespace UsageBilling.Cli.Tests.Infrastructure;

/// <summary>What one CLI process did.</summary>
public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>Runs <c>dotnet UsageBilling.Cli.dll …</c> as a real process in a working folder of its own, with none of the machine's UsageBilling settings.</summary>
public static class CliRunner
{
    public static string CliDll { get; } =
        typeof(CliRunner).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "CliDll").Value!;

    private static readonly string[] ScrubbedPrefixes = ["Stripe__", "ConnectionStrings__", "UsageBilling__", "Database__", "STRIPE_"];

    public static async Task<CliRun> RunAsync(string workingDirectory, params string[] args)
    {
        Assert.True(File.Exists(CliDll), $"The CLI is not built at {CliDll}.");
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(CliDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var key in start.Environment.Keys.Where(k => ScrubbedPrefixes.Any(p => k.StartsWith(p, StringComparison.OrdinalIgnoreCase))).ToList())
        {
            start.Environment.Remove(key);
        }

        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"usagebilling {string.Join(' ', args)} did not finish in 90 s.");
        }

        return new CliRun(process.ExitCode, await stdout, await stderr);
    }
}
