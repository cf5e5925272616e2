using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

/// <summary>The standalone emulator (its own program, as <c>dotnet run</c> starts it) prints the admin token it requires.</summary>
public sealed partial class StandaloneTokenTests
{
    [Fact]
    public async Task Standalone_LogsGeneratedAdminTokenAtStart_AndRequiresIt()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "UsageBilling.StripeEmulator.dll");
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var baseUrl = new Uri($"http://127.0.0.1:{port}");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "--urls", baseUrl.ToString().TrimEnd('/') })
        {
            start.ArgumentList.Add(a);
        }

        var token = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the emulator.");
        void Read(object? _, DataReceivedEventArgs e)
        {
            if (e.Data is { } line && TokenLine().Match(line) is { Success: true } m)
            {
                token.TrySetResult(m.Groups[1].Value);
            }
        }

        child.OutputDataReceived += Read;
        child.ErrorDataReceived += Read;
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        try
        {
            var printed = await token.Task.WaitAsync(TimeSpan.FromSeconds(60), Emu.Ct);
            using var http = new HttpClient();
            var admin = new EmulatorAdminClient(http, baseUrl, printed);
            DateTimeOffset? now = null;
            for (var i = 0; i < 100 && now is null; i++)
            {
                try
                {
                    now = await admin.GetNowAsync(Emu.Ct);
                }
                catch (HttpRequestException ex) when (ex.StatusCode is null)
                {
                    await Task.Delay(100, Emu.Ct);
                }
            }

            using var bare = await http.GetAsync(new Uri(baseUrl, "/_emulator/clock"), Emu.Ct);

            Assert.NotNull(now);
            Assert.Matches("^emu_admin_[0-9a-f]{48}$", printed);
            Assert.Equal(HttpStatusCode.Unauthorized, bare.StatusCode);
        }
        finally
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync(Emu.Ct);
        }
    }

    [GeneratedRegex(@"requires the admin token (\S+) ")]
    private static partial Regex TokenLine();
}
